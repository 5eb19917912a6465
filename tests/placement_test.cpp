// Rendezvous hashing (registryd/placement.h): what --placement hash promises
// a user, on the pick alone: names spread evenly, a new node takes about its
// share and only that, and every node picks alike.
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "placement.h"

namespace {

std::vector<std::string> names(const std::string& prefix, int count)
{
    std::vector<std::string> out;
    for (int i = 0; i < count; ++i)
        out.push_back(prefix + std::to_string(i));
    return out;
}

std::map<std::string, int> spread(const std::vector<std::string>& nodes, const std::vector<std::string>& names)
{
    std::map<std::string, int> count;
    for (const auto& name : names)
        ++count[kv::place(nodes, name)];
    return count;
}

} // namespace

TEST(Placement, AThousandNamesSpreadOverThreeNodesWithinTenPercentOfEven)
{
    for (const std::vector<std::string>& nodes : { std::vector<std::string> { "a", "b", "c" },
             std::vector<std::string> { "node-1.example", "node-2.example", "node-3.example" } }) {
        const auto count = spread(nodes, names("bucket-", 1000));
        ASSERT_EQ(count.size(), 3u);
        for (const auto& [node, n] : count) {
            EXPECT_GE(n, 300) << node;
            EXPECT_LE(n, 367) << node;
        }
    }
}

TEST(Placement, ANewNodeTakesAboutItsShareAndNoNameMovesBetweenTheOthers)
{
    const std::vector<std::string> before { "a", "b", "c" };
    const std::vector<std::string> after { "a", "b", "c", "d" };
    int moved = 0;
    for (const auto& name : names("bucket-", 1000)) {
        const std::string was = kv::place(before, name);
        const std::string is = kv::place(after, name);
        if (was != is) {
            EXPECT_EQ(is, "d") << name << " moved from " << was << " to " << is;
            ++moved;
        }
    }
    EXPECT_GE(moved, 225); // a quarter of 1,000, within 10%
    EXPECT_LE(moved, 275);
    // And a node that leaves gives only its own names away.
    for (const auto& name : names("other-", 1000)) {
        const std::string was = kv::place(after, name);
        const std::string is = kv::place(before, name);
        if (was != "d")
            EXPECT_EQ(is, was) << name;
    }
}

TEST(Placement, ThePickDependsOnTheMembershipNotItsOrder)
{
    const std::vector<std::string> one { "a", "b", "c" };
    const std::vector<std::string> other { "c", "a", "b" };
    for (const auto& name : names("bucket-", 200))
        EXPECT_EQ(kv::place(one, name), kv::place(other, name)) << name;
    EXPECT_EQ(kv::place({}, "milk"), "");
    EXPECT_EQ(kv::place({ "only" }, "milk"), "only");
}

TEST(Placement, TheScoreIsXxh3SoNodesOfEveryBuildAgree)
{
    // Nodes built by another compiler, or a later kv, must pick alike: the
    // score is a fixed function (XXH3-64 of the name, seeded with XXH3-64
    // of the node), never std::hash. The value is libxxhash 0.8.1's
    // XXH3_64bits_withSeed("milk", 4, XXH3_64bits("a", 1)), the seed being
    // 0xe6c632b61e964e1f, XXH3's published hash of "a": a change here
    // splits every cluster of mixed versions.
    EXPECT_EQ(kv::placement_score("a", "milk"), 5607090137644209190ULL);
    EXPECT_NE(kv::placement_score("ab", "c"), kv::placement_score("a", "bc"));
}

TEST(Placement, OnlyLocalAndHashAreChoices)
{
    EXPECT_EQ(kv::parse_placement("local"), kv::Placement::local);
    EXPECT_EQ(kv::parse_placement("hash"), kv::Placement::hash);
    EXPECT_EQ(kv::parse_placement("HASH"), std::nullopt);
    EXPECT_EQ(kv::parse_placement(""), std::nullopt);
    EXPECT_STREQ(kv::to_string(kv::Placement::hash), "hash");
}
