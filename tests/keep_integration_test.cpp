// KEEP as a user would doubt it: a permanent bucket with KEEP is SIGKILLed
// hundreds of times in the middle of a pipelined write load. After every
// restart it must hold exactly the writes it acknowledged (plus, at most,
// some it received but had not answered yet), or be empty and have said
// "data discarded: a write was in flight"; the new bucketd's structural
// check of the adopted table (SharedTableWriter::verify) must never find a
// fault, which it would log as "its table is inconsistent".
#include <signal.h>

#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "system_error.h"

using namespace kv::test;
using kv::resp::Value;

namespace {

std::size_t count_lines_with(const std::string& log, const std::string& part)
{
    std::size_t count = 0;
    std::istringstream stream(log);
    for (std::string line; std::getline(stream, line);)
        count += line.find(part) != std::string::npos;
    return count;
}

std::string value_for(const std::string& key) { return "value of " + key + std::string(key.size() * 3, '.'); }

// Every key of the bucket at `socket`, by SCAN, with its value.
std::map<std::string, std::string> contents(const std::string& socket)
{
    auto client = kv::Client::connect(socket);
    std::map<std::string, std::string> pairs;
    std::string cursor = "0";
    do {
        Value page = client.call({ "SCAN", cursor, "COUNT", "1000" });
        EXPECT_EQ(page.elements.size(), 2u);
        cursor = page.elements[0].text;
        std::vector<std::string> mget { "MGET" };
        for (const Value& key : page.elements[1].elements)
            mget.push_back(key.text);
        if (mget.size() == 1)
            continue;
        Value values = client.call(mget);
        EXPECT_EQ(values.elements.size(), mget.size() - 1);
        for (std::size_t i = 1; i < mget.size() && i <= values.elements.size(); ++i)
            pairs[mget[i]] = values.elements[i - 1].text;
    } while (cursor != "0");
    return pairs;
}

} // namespace

TEST(Keep, ABucketKilledMidWriteHundredsOfTimesHoldsExactlyItsAcknowledgedWritesOrIsEmptyAndSaysWhy)
{
    RegistryDaemon daemon({ "--max-restarts", "1000000" });
    ASSERT_FALSE(daemon.call({ "CREATE", "k", "RESTART", "permanent", "KEEP" }).is_error());
    std::mt19937 random(20261127);
    std::set<std::string> acknowledged; // written and answered, since the data was last discarded
    std::set<std::string> unanswered;   // sent but not answered before the kill
    constexpr int rounds = 200;
    constexpr int burst = 100;
    int kept = 0, discarded = 0;
    for (int round = 0; round < rounds; ++round) {
        Value bucket = daemon.call({ "LOOKUP", "k" });
        ASSERT_FALSE(bucket.is_error()) << bucket.text;
        const std::string socket = bucket.field("socket")->text;

        // A burst of pipelined SETs; the kill lands after a random number
        // of replies, while the bucket still has requests to work through.
        auto writer = kv::Client::connect(socket);
        set_receive_timeout(writer, scaled(10s));
        std::string requests;
        std::vector<std::string> keys;
        for (int i = 0; i < burst; ++i) {
            keys.push_back("r" + std::to_string(round) + "-" + std::to_string(i));
            const std::string& key = keys.back();
            const std::string value = value_for(key);
            requests += "*3\r\n$3\r\nSET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n$" + std::to_string(value.size())
                + "\r\n" + value + "\r\n";
        }
        auto monitor = daemon.monitor("k");
        writer.send_raw(requests);
        const int answered_before_kill = static_cast<int>(random() % burst);
        int answered = 0;
        for (; answered < answered_before_kill; ++answered) {
            ASSERT_EQ(writer.read_reply().text, "OK");
            acknowledged.insert(keys[static_cast<std::size_t>(answered)]);
        }
        ASSERT_EQ(kill_process(pid_of(bucket), SIGKILL), 0);
        // Replies already on their way are acknowledged writes too.
        try {
            for (; answered < burst; ++answered) {
                if (writer.read_reply().text != "OK")
                    break;
                acknowledged.insert(keys[static_cast<std::size_t>(answered)]);
            }
        } catch (const kv::ConnectionClosed&) {
        } catch (const kv::SystemError&) { // ECONNRESET
        }
        for (int i = answered; i < burst; ++i)
            unanswered.insert(keys[static_cast<std::size_t>(i)]);
        ASSERT_EQ(monitor.read_reply().text, "killed by SIGKILL; restarting");

        // LOOKUP waits for the restarted bucket; by then it has logged
        // whether it kept the data.
        Value restarted = daemon.call({ "LOOKUP", "k" });
        ASSERT_FALSE(restarted.is_error()) << restarted.text;
        ASSERT_NE(pid_of(restarted), pid_of(bucket));
        const std::string log = daemon.log();
        const std::size_t kept_now = count_lines_with(log, "data kept:");
        const std::size_t discarded_now = count_lines_with(log, "data discarded:");
        ASSERT_EQ(count_lines_with(log, "data discarded: a write was in flight"), discarded_now)
            << "the structural check found a fault:\n" << log;
        ASSERT_EQ(kept_now + discarded_now, static_cast<std::size_t>(round + 1)) << log;
        const bool was_kept = static_cast<int>(kept_now) > kept;
        kept = static_cast<int>(kept_now);
        discarded = static_cast<int>(discarded_now);

        const auto pairs = contents(restarted.field("socket")->text);
        if (!was_kept) {
            EXPECT_TRUE(pairs.empty()) << "discarded, yet " << pairs.size() << " keys are there";
            acknowledged.clear();
            unanswered.clear();
            continue;
        }
        for (const auto& key : acknowledged)
            ASSERT_TRUE(pairs.count(key)) << "round " << round << ": acknowledged " << key << " is missing";
        for (const auto& [key, value] : pairs) {
            ASSERT_TRUE(acknowledged.count(key) || unanswered.count(key)) << "round " << round << ": " << key << " was never written";
            ASSERT_EQ(value, value_for(key)) << key;
            acknowledged.insert(key); // there now: it must stay
        }
        unanswered.clear();
    }
    std::cout << "KEEP under a write load: kept " << kept << " of " << rounds << " restarts, discarded " << discarded << "\n";
    EXPECT_GT(kept, 0);
    expect_no_zombie(daemon.pid());
}
