// Cluster mode's races, made to happen on cue: a HoldingProxy between a
// node and etcd (tests/holding_proxy.h) holds one request of the node's
// until the test lets it go, so the order that once went wrong is the order
// every run takes.
#include <gtest/gtest.h>

#include <thread>

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

long long pid_of(const Value& reply)
{
    long long pid = -1;
    reply.integer_field("pid", pid);
    return pid;
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
    auto etcd_value = [&] {
        const auto names = etcd.range_prefix("kv/names/");
        return names.count("kv/names/milk") ? names.at("kv/names/milk") : std::string();
    };
    for (const auto deadline = Clock::now() + scaled(10s); Clock::now() < deadline; std::this_thread::sleep_for(5ms))
        if (etcd_value().find("\"ready\"") != std::string::npos)
            break;
    ASSERT_NE(etcd_value().find("\"ready\""), std::string::npos) << etcd_value();
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
    proxy.release_held();
    creator.join();

    ASSERT_FALSE(again.is_error()) << again.text;
    const long long pid = pid_of(again);
    EXPECT_NE(pid, pid_of(first));
    // etcd holds the new bucket, as every node sees: the late release
    // deleted nothing of it.
    std::string value;
    for (const auto deadline = Clock::now() + scaled(10s); Clock::now() < deadline; std::this_thread::sleep_for(5ms)) {
        value = etcd_value();
        if (value.find("\"pid\":" + std::to_string(pid)) != std::string::npos)
            break;
    }
    EXPECT_NE(value.find("\"pid\":" + std::to_string(pid)), std::string::npos) << value;
    Value seen;
    for (const auto deadline = Clock::now() + scaled(10s); Clock::now() < deadline; std::this_thread::sleep_for(5ms)) {
        seen = b.call({ "LOOKUP", "milk" });
        if (!seen.is_error() && pid_of(seen) == pid)
            break;
    }
    EXPECT_EQ(pid_of(seen), pid) << seen.text;
}
