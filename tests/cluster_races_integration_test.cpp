// Cluster mode's races, made to happen on cue: a HoldingProxy between a
// node and etcd (tests/holding_proxy.h) holds one request of the node's
// until the test lets it go, so the order that once went wrong is the order
// every run takes.
#include <signal.h>

#include <thread>

#include <gtest/gtest.h>

#include <boost/beast/core/detail/base64.hpp>

#include "daemon_fixture.h"
#include "etcd_fixture.h"
#include "holding_proxy.h"

using namespace kv::test;
using kv::resp::Value;
using Clock = std::chrono::steady_clock;

namespace {

std::string base64(const std::string& bytes)
{
    namespace base64 = boost::beast::detail::base64;
    std::string text(base64::encoded_size(bytes.size()), '\0');
    text.resize(base64::encode(text.data(), bytes.data(), bytes.size()));
    return text;
}

// etcd's value of `name` ("" if it has none), decoded.
std::string etcd_value(const EtcdCluster& etcd, const std::string& name)
{
    const auto names = etcd.range_prefix("kv/names/");
    return names.count("kv/names/" + name) ? names.at("kv/names/" + name) : std::string();
}

// Asks until `done()` holds or the deadline passes; what `done` last said.
template <class Condition>
bool eventually(Condition done, std::chrono::milliseconds deadline = scaled(20s))
{
    for (const auto until = Clock::now() + deadline; Clock::now() < until; std::this_thread::sleep_for(5ms)) // between two questions
        if (done())
            return true;
    return done();
}

} // namespace

TEST(ClusterRaces, AClaimWaitsForThePendingReleaseOfItsNameSoTheLateReleaseDeletesNothingNew)
{
    // The race a review found: node a STOPs milk and sends the release
    // (delete the key if its claim is still ours); before etcd applies it,
    // a CREATE of milk on a claims the name again. Sent at once, that claim
    // finds the old key and answers with a bucket that is gone, and the
    // release then deletes the name: free in the cluster while a client
    // was told it exists (another node could then create it, and two
    // buckets would take writes). A claim must wait for the release.
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    HoldingProxy proxy(etcd.client_url(0));
    RegistryDaemon a({ "--cluster", proxy.url(), "--node", "a", "--lease-ttl", "10", "--log-level", "debug" });
    RegistryDaemon b({ "--cluster", etcd.client_urls(), "--node", "b", "--lease-ttl", "10" });
    const Value first = a.create("milk");

    const std::string key = base64("kv/names/milk");
    auto release_of_milk = [&](const std::string& request) {
        return request.find("requestDeleteRange") != std::string::npos && request.find(key) != std::string::npos;
    };
    auto put_of_milk = [&](const std::string& request) {
        return request.find("requestPut") != std::string::npos && request.find(key) != std::string::npos;
    };
    // Once etcd has milk ready (its update went through the proxy), every
    // put of milk the proxy sees from now on is a new claim.
    ASSERT_TRUE(eventually([&] { return etcd_value(etcd, "milk").find("\"ready\"") != std::string::npos; }))
        << etcd_value(etcd, "milk");
    proxy.hold_if(release_of_milk);
    proxy.forget_seen();
    ASSERT_EQ(a.call({ "STOP", "milk" }).text, "OK");
    ASSERT_TRUE(proxy.wait_for(release_of_milk, scaled(10s))) << "a never released milk";

    Value again;
    std::thread creator([&] { again = a.connect().call({ "CREATE", "milk" }); });
    // registryd has taken the CREATE once its log says the claim waits, or
    // once the claim reached the proxy (the race's order).
    const auto until = Clock::now() + scaled(10s);
    const std::string waits = "the claim of bucket milk waits for the release of its last claim";
    while (a.log().find(waits) == std::string::npos && !proxy.seen(put_of_milk) && Clock::now() < until)
        std::this_thread::sleep_for(5ms); // between two looks, not instead of an answer
    EXPECT_FALSE(proxy.seen(put_of_milk)) << "a claim of milk went to etcd while its release was pending";
    EXPECT_NE(a.log().find(waits), std::string::npos) << a.log();
    proxy.hold_if(nullptr);
    proxy.release_held();
    creator.join();

    ASSERT_FALSE(again.is_error()) << again.text;
    const long long pid = pid_of(again);
    EXPECT_NE(pid, pid_of(first));
    // etcd holds the new bucket, as every node sees: the late release
    // deleted nothing of it.
    const std::string ours = "\"pid\":" + std::to_string(pid);
    EXPECT_TRUE(eventually([&] { return etcd_value(etcd, "milk").find(ours) != std::string::npos; })) << etcd_value(etcd, "milk");
    Value seen;
    EXPECT_TRUE(eventually([&] {
        seen = b.call({ "LOOKUP", "milk" });
        return !seen.is_error() && pid_of(seen) == pid;
    }));
    EXPECT_EQ(pid_of(seen), pid) << seen.text;
}

TEST(ClusterRaces, ABucketRestartedWhileItsNameIsClaimedAgainKeepsTheNewClaimAndTakesWrites)
{
    // Node a's lease is lost (its keepalives held past the TTL: etcd frees
    // its names), and a replaces it and claims its names again. While that
    // claim of milk is on its way, milk (RESTART permanent) is killed and
    // restarted: a new process, a new id. The claim's answer must reach
    // the bucket now serving the name: found by name, not by the old id
    // (which made registryd release the fresh claim, leaving the name free
    // in the cluster and the bucket refusing writes for ever).
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    HoldingProxy proxy(etcd.client_url(0));
    RegistryDaemon a({ "--cluster", proxy.url(), "--node", "a", "--lease-ttl", "2" });
    RegistryDaemon b({ "--cluster", etcd.client_urls(), "--node", "b", "--lease-ttl", "10" });
    const Value first = a.call({ "CREATE", "milk", "RESTART", "permanent" });
    ASSERT_FALSE(first.is_error()) << first.text;
    ASSERT_TRUE(eventually([&] { return etcd_value(etcd, "milk").find("\"ready\"") != std::string::npos; }));

    const std::string key = base64("kv/names/milk");
    auto keepalive = [](const std::string& request) { return request.rfind("POST /v3/lease/keepalive ", 0) == 0; };
    auto put_of_milk = [&](const std::string& request) {
        return request.find("requestPut") != std::string::npos && request.find(key) != std::string::npos;
    };
    // The lease expires in etcd: a's node key goes with it.
    proxy.hold_if(keepalive);
    ASSERT_TRUE(eventually([&] { return etcd.range_prefix("kv/nodes/").count("kv/nodes/a") == 0; })) << "a's lease never expired";
    // Keepalives go again (etcd answers that the lease is gone); a's new
    // claim of milk is held.
    proxy.hold_if(put_of_milk);
    proxy.forget_seen();
    proxy.release_held();
    ASSERT_TRUE(proxy.wait_for(put_of_milk, scaled(20s))) << "a never claimed milk again\n" << a.log();

    // milk restarts meanwhile, under a new pid and id.
    ASSERT_EQ(::kill(static_cast<pid_t>(pid_of(first)), SIGKILL), 0);
    Value restarted;
    ASSERT_TRUE(eventually([&] {
        restarted = a.call({ "LOOKUP", "milk" });
        return !restarted.is_error() && pid_of(restarted) != pid_of(first);
    })) << restarted.text;

    proxy.hold_if(nullptr);
    proxy.release_held();
    // The claim stands for the restarted bucket: it takes writes again...
    std::string socket;
    ASSERT_TRUE(restarted.text_field("socket", socket));
    auto bucket = kv::Client::connect(socket);
    Value written;
    EXPECT_TRUE(eventually([&] {
        written = bucket.call({ "SET", "eggs", "12" });
        return written.text == "OK";
    })) << written.text;
    // ...and the cluster knows it as a's, with its new pid.
    const std::string ours = "\"pid\":" + std::to_string(pid_of(restarted));
    EXPECT_TRUE(eventually([&] { return etcd_value(etcd, "milk").find(ours) != std::string::npos; })) << etcd_value(etcd, "milk");
    Value seen;
    EXPECT_TRUE(eventually([&] {
        seen = b.call({ "LOOKUP", "milk" });
        return !seen.is_error() && pid_of(seen) == pid_of(restarted);
    })) << seen.text;
    EXPECT_GE(std::stoi(registry_info(a).at("cluster_leases_lost")), 1);
    // And the claim that landed was the one held, answered as such: had
    // registryd's etcd call timed out meanwhile, a second claim (made after
    // the restart) could have put the new pid whatever the fix does.
    EXPECT_NE(a.log().find("claimed again in the cluster"), std::string::npos) << a.log();
    EXPECT_EQ(a.log().find("unable to claim its name again"), std::string::npos) << a.log();
}
