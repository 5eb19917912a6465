// --placement hash, as a user of several nodes would doubt it: real etcd on
// loopback, real registryd nodes with TCP and a password, real buckets. A
// CREATE sent to any node starts its bucket on the node rendezvous hashing
// picks (registryd/placement.h), and is answered where it was asked.
//
// The expected node of each name is computed here with the same pick
// (kv::place) over the nodes the test started, so every bucket's node is
// checked, not only the counts.
#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "etcd_fixture.h"
#include "holding_proxy.h"
#include "placement.h"

#include <boost/beast/core/detail/base64.hpp>

using namespace kv::test;
using kv::resp::Value;
using Clock = std::chrono::steady_clock;

namespace {

// Nodes of one cluster, each with TCP, the cluster's password and `extra`.
class PlacedCluster {
public:
    PlacedCluster()
    {
        password_file_ = write_password_file(secrets_, "password", "a cluster's one password");
    }

    // `through`: the etcd URL the node is given (a proxy's), if not etcd's own.
    RegistryDaemon& start(const std::string& node, std::vector<std::string> extra = {}, const std::string& through = {})
    {
        std::vector<std::string> arguments { "--cluster", through.empty() ? etcd_.client_urls() : through, "--node", node, "--lease-ttl", "10",
            "--placement", "hash", "--listen-tcp", "127.0.0.1:0", "--password-file", password_file_ };
        arguments.insert(arguments.end(), extra.begin(), extra.end());
        nodes_[node] = std::make_unique<RegistryDaemon>(arguments);
        return *nodes_[node];
    }

    // Waits until every node's copy of the membership has all the nodes:
    // until then a node would place names over fewer.
    void wait_for_membership() const
    {
        const auto until = Clock::now() + scaled(20s);
        for (const auto& [node, daemon] : nodes_) {
            while (registry_info(*daemon).at("cluster_nodes") != std::to_string(nodes_.size())) {
                ASSERT_LT(Clock::now(), until) << "node " << node << " never saw all " << nodes_.size() << " nodes";
                std::this_thread::sleep_for(5ms); // between two questions, not instead of an answer
            }
        }
    }

    std::vector<std::string> names() const
    {
        std::vector<std::string> out;
        for (const auto& [node, daemon] : nodes_)
            out.push_back(node);
        return out;
    }
    RegistryDaemon& operator[](const std::string& node) const { return *nodes_.at(node); }
    const EtcdCluster& etcd() const { return etcd_; }

private:
    EtcdCluster etcd_;
    TemporaryDirectory secrets_;
    std::string password_file_;
    std::map<std::string, std::unique_ptr<RegistryDaemon>> nodes_;
};

// CREATEs `names`, spread over the `asked` nodes in turn (one client thread
// each), and returns each name's reply; each bucket is then checked on the
// node its reply names (LIST there), and STOPped there, so that a thousand
// names never make a thousand processes at once.
std::map<std::string, Value> create_everywhere(const PlacedCluster& cluster, const std::vector<std::string>& asked,
    const std::vector<std::string>& names)
{
    std::map<std::string, Value> replies;
    constexpr std::size_t batch = 150;
    for (std::size_t first = 0; first < names.size(); first += batch) {
        const std::size_t last = std::min(names.size(), first + batch);
        std::vector<std::map<std::string, Value>> per_thread(asked.size());
        std::vector<std::thread> threads;
        for (std::size_t t = 0; t < asked.size(); ++t)
            threads.emplace_back([&, t] {
                auto client = cluster[asked[t]].connect();
                for (std::size_t i = first + t; i < last; i += asked.size())
                    per_thread[t][names[i]] = client.call({ "CREATE", names[i] });
            });
        for (auto& thread : threads)
            thread.join();
        std::map<std::string, std::set<std::string>> made; // node -> its names of this batch
        for (auto& results : per_thread)
            for (auto& [name, reply] : results) {
                EXPECT_FALSE(reply.is_error()) << name << ": " << reply.text;
                made[text_of(reply, "node")].insert(name);
                replies[name] = std::move(reply);
            }
        for (const auto& [node, mine] : made) {
            std::set<std::string> listed;
            for (const auto& entry : cluster[node].call({ "LIST" }).elements)
                listed.insert(text_of(entry, "name"));
            EXPECT_EQ(listed, mine) << "node " << node << " runs other buckets than its replies said";
            auto client = cluster[node].connect();
            for (const auto& name : mine)
                EXPECT_EQ(client.call({ "STOP", name }).text, "OK") << name;
        }
    }
    return replies;
}

// The first of prefix0, prefix1, ... that `nodes` place on `node`.
std::string name_placed_on(const std::vector<std::string>& nodes, const std::string& node, const std::string& prefix)
{
    for (int i = 0;; ++i)
        if (std::string name = prefix + std::to_string(i); kv::place(nodes, name) == node)
            return name;
}

std::vector<std::string> numbered(const std::string& prefix, int count)
{
    std::vector<std::string> out;
    for (int i = 0; i < count; ++i)
        out.push_back(prefix + std::to_string(i));
    return out;
}

} // namespace

TEST(Placement, AThousandNamesGoToTheirHashedNodesEvenlyAndANewNodeTakesItsShare)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    PlacedCluster cluster;
    for (const char* node : { "a", "b", "c" })
        cluster.start(node);
    cluster.wait_for_membership();

    // Under the sanitizers (./kv sanitize stretches every deadline), a
    // bucket takes about ten times as long to start and to stop: a fifth of
    // the names, each still checked against the pick, with bounds as wide as
    // a fifth of the sample needs. The evenness of 1,000 is the plain run's
    // (and placement_test's, on the pick alone).
    const bool full = scaled(1ms) == 1ms;
    const int count = full ? 1000 : 210;
    const double slack = full ? 0.10 : 0.20;
    const auto first = numbered("bucket-", count);
    const auto replies = create_everywhere(cluster, { "a", "b", "c" }, first);
    std::map<std::string, int> placed;
    for (const auto& name : first) {
        const std::string node = text_of(replies.at(name), "node");
        EXPECT_EQ(node, kv::place({ "a", "b", "c" }, name)) << name;
        ++placed[node];
    }
    for (const char* node : { "a", "b", "c" }) {
        EXPECT_GE(placed[node], count * (1 - slack) / 3) << node; // a third, within 10% (20% of the sample)
        EXPECT_LE(placed[node], count * (1 + slack) / 3) << node;
        // Asked on three nodes, two thirds of what a node ran came from the others.
        EXPECT_GT(std::stoull(registry_info(cluster[node]).at("cluster_placements_forwarded")), 0u) << node;
        EXPECT_EQ(registry_info(cluster[node]).at("cluster_placements_failed"), "0") << node;
    }

    // A fourth node joins: new names, asked on the old nodes only, give it
    // about a quarter, and a name goes elsewhere only if it goes to d.
    cluster.start("d");
    cluster.wait_for_membership();
    const int later_count = full ? 400 : 84;
    const auto later = numbered("later-", later_count);
    const auto more = create_everywhere(cluster, { "a", "b", "c" }, later);
    int to_d = 0;
    for (const auto& name : later) {
        const std::string node = text_of(more.at(name), "node");
        EXPECT_EQ(node, kv::place({ "a", "b", "c", "d" }, name)) << name;
        if (node != kv::place({ "a", "b", "c" }, name)) {
            EXPECT_EQ(node, "d") << name;
        }
        to_d += node == "d";
    }
    EXPECT_GE(to_d, later_count * (1 - 2.5 * slack) / 4); // a quarter, within 25% (50% of the sample)
    EXPECT_LE(to_d, later_count * (1 + 2.5 * slack) / 4);
}

TEST(Placement, ACreateIsAnsweredWhereItWasAskedWithTheBucketOfItsNode)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    PlacedCluster cluster;
    for (const char* node : { "a", "b", "c" })
        cluster.start(node);
    cluster.wait_for_membership();

    // A name placed on b, asked on a: b runs it, a answers with b's bucket
    // as it shows any other node's: node and TCP address, no local paths.
    const std::string name = name_placed_on({ "a", "b", "c" }, "b", "milk-");
    const Value created = cluster["a"].call({ "CREATE", name });
    ASSERT_FALSE(created.is_error()) << created.text;
    EXPECT_EQ(text_of(created, "node"), "b");
    EXPECT_EQ(text_of(created, "socket"), "");
    EXPECT_EQ(text_of(created, "address").rfind("127.0.0.1:", 0), 0u);
    const Value on_b = cluster["b"].call({ "LOOKUP", name });
    EXPECT_EQ(text_of(on_b, "address"), text_of(created, "address"));
    long long pid_a = 0;
    long long pid_b = 1;
    created.integer_field("pid", pid_a);
    on_b.integer_field("pid", pid_b);
    EXPECT_EQ(pid_a, pid_b);
    // Asked again on c: the same bucket, CREATE stays idempotent.
    const Value again = cluster["c"].call({ "CREATE", name });
    EXPECT_EQ(text_of(again, "address"), text_of(created, "address"));

    // HERE: on the node asked, whatever the hash says; the name is then
    // the cluster's, and a CREATE forwarded to its hashed node finds it.
    const std::string pinned = name_placed_on({ "a", "b", "c" }, "b", "pinned-");
    const Value here = cluster["c"].call({ "CREATE", pinned, "HERE" });
    ASSERT_FALSE(here.is_error()) << here.text;
    EXPECT_EQ(text_of(here, "node"), "c");
    const Value forwarded = cluster["a"].call({ "CREATE", pinned });
    EXPECT_EQ(text_of(forwarded, "node"), "c") << forwarded.text;

    // The other node's refusal is relayed as it gave it.
    const Value refused = cluster["a"].call({ "CREATE", name, "RESTART", "permanent" });
    ASSERT_TRUE(refused.is_error());
    EXPECT_NE(refused.text.find("exists with restart policy temporary"), std::string::npos) << refused.text;

    // RESP3: the relayed record is a map.
    auto client = cluster["a"].connect();
    client.call({ "HELLO", "3" });
    const std::string third = name_placed_on({ "a", "b", "c" }, "c", "eggs-");
    const Value map = client.call({ "CREATE", third });
    EXPECT_EQ(map.type, Value::Type::map) << map.text;
    EXPECT_EQ(text_of(map, "node"), "c");
}

TEST(Placement, ANameWhoseNodeDoesNotAnswerIsCreatedHereInstead)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    PlacedCluster cluster;
    const auto ready_timeout = scaled(1s); // a's own bucket must start within it, under the sanitizers too
    cluster.start("a", { "--ready-timeout-ms", std::to_string(ready_timeout.count()) });
    cluster.start("b");
    cluster.wait_for_membership();
    const std::string name = name_placed_on({ "a", "b" }, "b", "stuck-");

    // b is stopped, its lease still live: the kernel takes a's connection,
    // and nobody answers it. a gives up after its call's deadline (its
    // ready timeout and two seconds) and makes the name itself: placement
    // spreads names, the claim keeps them unique.
    ASSERT_EQ(::kill(cluster["b"].pid(), SIGSTOP), 0);
    const Value created = cluster["a"].call({ "CREATE", name });
    ASSERT_EQ(::kill(cluster["b"].pid(), SIGCONT), 0);
    ASSERT_FALSE(created.is_error()) << created.text;
    EXPECT_EQ(text_of(created, "node"), "a");
    EXPECT_EQ(registry_info(cluster["a"]).at("cluster_placements_failed"), "1");
    const std::string timed_out = "timed out after " + std::to_string((ready_timeout + 2s).count()) + " ms";
    EXPECT_NE(cluster["a"].log().find("unable to forward CREATE " + name + " to node b: " + timed_out + "; creating it here"),
        std::string::npos) << cluster["a"].log();
    // b, back, finds the name taken: a CREATE there gives a's bucket.
    const Value on_b = cluster["b"].call({ "CREATE", name });
    EXPECT_EQ(text_of(on_b, "node"), "a") << on_b.text;
}

TEST(Placement, ACreateOfANameThisNodeIsClaimingJoinsThatClaimInsteadOfGoingElsewhere)
{
    // A CREATE ... HERE of a name hashed to b is claiming it on a (the claim
    // held on its way to etcd, at a proxy); a plain CREATE of the same name
    // on a meanwhile must wait for that claim, not be sent to b, which
    // would make the name there and leave a's HERE answered with b's bucket.
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    PlacedCluster cluster;
    HoldingProxy proxy(cluster.etcd().client_url(0));
    cluster.start("a", {}, proxy.url());
    cluster.start("b");
    cluster.wait_for_membership();
    const std::string name = name_placed_on({ "a", "b" }, "b", "pinned-");
    namespace base64 = boost::beast::detail::base64;
    const std::string key_bytes = "kv/names/" + name;
    std::string key(base64::encoded_size(key_bytes.size()), '\0');
    key.resize(base64::encode(key.data(), key_bytes.data(), key_bytes.size()));
    auto claim = [&](const std::string& request) {
        return request.find("requestPut") != std::string::npos && request.find(key) != std::string::npos;
    };
    proxy.hold_if(claim);

    Value here, plain;
    std::thread first([&] { here = cluster["a"].connect().call({ "CREATE", name, "HERE" }); });
    EXPECT_TRUE(proxy.wait_for(claim, scaled(10s))); // no ASSERT while a thread runs: it must be joined
    std::thread second([&] { plain = cluster["a"].connect().call({ "CREATE", name }); });
    // a has taken the plain CREATE once CLIENT LIST shows both clients'
    // last command as create (a request is noted as it runs); only then
    // does the held claim go on.
    auto creates_running = [&] {
        const std::string list = cluster["a"].call({ "CLIENT", "LIST" }).text;
        std::size_t count = 0;
        for (auto at = list.find("cmd=create "); at != std::string::npos; at = list.find("cmd=create ", at + 1))
            ++count;
        return count;
    };
    const auto until = Clock::now() + scaled(10s);
    while (creates_running() < 2 && Clock::now() < until)
        std::this_thread::sleep_for(5ms); // between two looks
    EXPECT_EQ(creates_running(), 2u);
    proxy.hold_if(nullptr);
    proxy.release_held();
    first.join();
    second.join();
    ASSERT_FALSE(here.is_error()) << here.text;
    ASSERT_FALSE(plain.is_error()) << plain.text;
    EXPECT_EQ(text_of(here, "node"), "a");
    EXPECT_EQ(text_of(plain, "node"), "a");
    EXPECT_EQ(pid_of(plain), pid_of(here));
    EXPECT_NE(text_of(plain, "socket"), ""); // this node's bucket, with its local paths
    EXPECT_EQ(registry_info(cluster["a"]).at("cluster_placements_forwarded"), "0");
    EXPECT_EQ(cluster["b"].call({ "LIST" }).elements.size(), 0u) << "b made the name too";
}

TEST(Placement, HashPlacementNeedsAClusterAndTcp)
{
    TemporaryDirectory run_dir;
    auto usage = [&](std::vector<std::string> arguments) {
        arguments.insert(arguments.begin(), { binary("registryd"), "--run-dir", run_dir.path() });
        return run_program(arguments);
    };
    const auto without_tcp = usage({ "--cluster", "http://127.0.0.1:1", "--node", "a", "--placement", "hash" });
    EXPECT_EQ(without_tcp.exit_code, 2);
    EXPECT_NE(without_tcp.err.find("--placement hash needs --cluster and --listen-tcp"), std::string::npos) << without_tcp.err;
    const auto unknown = usage({ "--placement", "random" });
    EXPECT_EQ(unknown.exit_code, 2);
    EXPECT_NE(unknown.err.find("not a placement (local or hash): random"), std::string::npos) << unknown.err;
}
