// Cluster mode (registryd --cluster URLS --node NAME), as a user of several
// nodes would doubt it: real etcd on loopback (etcd_fixture.h), several real
// registryd nodes each with its own run dir, real buckets killed with
// signals, and etcd itself killed and stopped.
//
// A node learns of another node's change through its etcd watch, a moment
// after etcd has it. So a test that waits for "the name is free on node A"
// asks node A again until it says so, with a deadline: the deadline bounds a
// hang, it claims nothing about speed (BENCHMARKS.md measures that).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <latch>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "etcd_fixture.h"

using namespace kv::test;
using kv::resp::Value;
using Clock = std::chrono::steady_clock;

namespace {

std::string text_of(const Value& reply, const char* field)
{
    std::string text;
    reply.text_field(field, text);
    return text;
}

long long pid_of(const Value& reply)
{
    long long pid = -1;
    reply.integer_field("pid", pid);
    return pid;
}

// One registryd joined to `etcd` as node `node`.
std::unique_ptr<RegistryDaemon> start_node(const EtcdCluster& etcd, const std::string& node, long lease_ttl = 2,
    std::vector<std::string> extra = {})
{
    std::vector<std::string> arguments { "--cluster", etcd.client_urls(), "--node", node, "--lease-ttl", std::to_string(lease_ttl) };
    arguments.insert(arguments.end(), extra.begin(), extra.end());
    return std::make_unique<RegistryDaemon>(arguments);
}

// Asks `daemon` LOOKUP `name` until `done(reply)` holds or the deadline passes.
template <class Condition>
Value lookup_until(const RegistryDaemon& daemon, const std::string& name, Condition done, std::chrono::milliseconds deadline = scaled(20s))
{
    const auto until = Clock::now() + deadline;
    Value reply;
    do {
        reply = daemon.call({ "LOOKUP", name });
        if (done(reply))
            return reply;
        std::this_thread::sleep_for(5ms); // between two questions, not instead of an answer
    } while (Clock::now() < until);
    return reply;
}

bool not_found(const Value& reply) { return reply.is_error() && reply.text.rfind("NOTFOUND", 0) == 0; }
bool found(const Value& reply) { return !reply.is_error(); }

std::set<std::string> local_names(const RegistryDaemon& daemon)
{
    std::set<std::string> names;
    const Value list = daemon.call({ "LIST" });
    for (const auto& entry : list.elements)
        names.insert(text_of(entry, "name"));
    return names;
}

} // namespace

TEST(Cluster, ConcurrentCreatesOfOneNameOnThreeNodesMakeExactlyOneBucket)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    std::vector<std::unique_ptr<RegistryDaemon>> nodes;
    for (const char* node : { "a", "b", "c" })
        nodes.push_back(start_node(etcd, node));

    constexpr int names = 40;
    for (int round = 0; round < names; ++round) {
        const std::string name = "race" + std::to_string(round);
        std::vector<Value> replies(nodes.size());
        std::latch start(static_cast<std::ptrdiff_t>(nodes.size()));
        std::vector<std::thread> threads;
        for (std::size_t i = 0; i < nodes.size(); ++i)
            threads.emplace_back([&, i] {
                auto client = nodes[i]->connect();
                start.arrive_and_wait();
                replies[i] = client.call({ "CREATE", name });
            });
        for (auto& thread : threads)
            thread.join();
        for (const auto& reply : replies) {
            ASSERT_FALSE(reply.is_error()) << name << ": " << reply.text;
            EXPECT_EQ(text_of(reply, "node"), text_of(replies[0], "node")) << name;
            EXPECT_EQ(pid_of(reply), pid_of(replies[0])) << name;
        }
    }
    // Exactly one bucket per name, over all the nodes' own lists.
    std::multiset<std::string> everywhere;
    for (const auto& node : nodes)
        for (const auto& name : local_names(*node))
            everywhere.insert(name);
    EXPECT_EQ(everywhere.size(), static_cast<std::size_t>(names));
    for (int round = 0; round < names; ++round)
        EXPECT_EQ(everywhere.count("race" + std::to_string(round)), 1u);
    // And etcd holds one key per name.
    EXPECT_EQ(etcd.range_prefix("kv/names/").size(), static_cast<std::size_t>(names));
}

TEST(Cluster, LookupOnAnyNodeNamesTheNodeAndPidOfABucketAnywhere)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    auto a = start_node(etcd, "a");
    auto b = start_node(etcd, "b");
    const Value created = a->call({ "CREATE", "shopping" });
    ASSERT_FALSE(created.is_error()) << created.text;
    EXPECT_EQ(text_of(created, "node"), "a");
    EXPECT_FALSE(text_of(created, "socket").empty());

    const Value seen = lookup_until(*b, "shopping", found);
    ASSERT_FALSE(seen.is_error()) << seen.text;
    EXPECT_EQ(text_of(seen, "node"), "a");
    EXPECT_EQ(pid_of(seen), pid_of(created));
    // Another node's bucket has no socket or segment on this one.
    EXPECT_EQ(text_of(seen, "socket"), "");
    EXPECT_EQ(text_of(seen, "segment"), "");
    // CREATE on b of a's name answers a's bucket: CREATE stays idempotent cluster-wide.
    const Value again = b->call({ "CREATE", "shopping" });
    ASSERT_FALSE(again.is_error()) << again.text;
    EXPECT_EQ(text_of(again, "node"), "a");
    EXPECT_EQ(pid_of(again), pid_of(created));
    EXPECT_TRUE(local_names(*b).empty());

    EXPECT_TRUE(not_found(b->call({ "LOOKUP", "never-created" })));
    const auto info = registry_info(*b);
    EXPECT_EQ(info.at("cluster_state"), "joined");
    EXPECT_EQ(info.at("cluster_node"), "b");
    EXPECT_EQ(info.at("cluster_nodes"), "2");
}

TEST(Cluster, AKilledBucketsNameIsFreeOnEveryNodeAndCanBeCreatedElsewhere)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    auto a = start_node(etcd, "a");
    auto b = start_node(etcd, "b");
    const Value created = b->call({ "CREATE", "cart" });
    ASSERT_FALSE(created.is_error()) << created.text;
    ASSERT_FALSE(lookup_until(*a, "cart", found).is_error());

    auto monitor = b->monitor("cart");
    ASSERT_EQ(kill_process(pid_of(created), SIGKILL), 0);
    (void)monitor.read_reply(); // b has reaped it

    EXPECT_TRUE(not_found(lookup_until(*a, "cart", not_found))) << "a still sees the name of a bucket that b reaped";
    EXPECT_TRUE(etcd.range_prefix("kv/names/").empty());
    const Value moved = a->call({ "CREATE", "cart" });
    ASSERT_FALSE(moved.is_error()) << moved.text;
    EXPECT_EQ(text_of(moved, "node"), "a");
}

TEST(Cluster, AKilledNodesBucketsDieAndItsNamesAreFreeAfterItsLease)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    auto a = start_node(etcd, "a");
    auto b = start_node(etcd, "b", 3);
    std::vector<kv::UniqueFd> buckets;
    for (int i = 0; i < 5; ++i) {
        const Value created = b->call({ "CREATE", "b" + std::to_string(i) });
        ASSERT_FALSE(created.is_error()) << created.text;
        buckets.push_back(open_pidfd(static_cast<pid_t>(pid_of(created))));
    }
    ASSERT_FALSE(lookup_until(*a, "b4", found).is_error());

    b->leave_leftovers();
    const auto killed = Clock::now();
    ASSERT_EQ(kill_process(b->pid(), SIGKILL), 0);
    for (const auto& bucket : buckets)
        EXPECT_TRUE(wait_readable(bucket.get(), scaled(10s))) << "a bucket outlived its registryd";
    // Until the lease expires, the names stay b's (checked only well
    // within the TTL: the lease had at least 2 s left at the kill).
    const Value early = a->call({ "LOOKUP", "b0" });
    if (Clock::now() - killed < 1500ms) {
        ASSERT_FALSE(early.is_error()) << early.text;
        EXPECT_EQ(text_of(early, "node"), "b");
    }
    for (int i = 0; i < 5; ++i)
        EXPECT_TRUE(not_found(lookup_until(*a, "b" + std::to_string(i), not_found))) << "b" << i << " outlived b's lease";
    const Value taken = a->call({ "CREATE", "b0" });
    ASSERT_FALSE(taken.is_error()) << taken.text;
    EXPECT_EQ(text_of(taken, "node"), "a");
}

TEST(Cluster, AStoppedNodeReleasesItsNamesAtOnceNotAfterItsLease)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    auto a = start_node(etcd, "a");
    auto b = start_node(etcd, "b", 600); // a lease far longer than the test's deadline
    ASSERT_FALSE(b->call({ "CREATE", "kept" }).is_error());
    ASSERT_FALSE(lookup_until(*a, "kept", found).is_error());
    const auto exit = b->stop(SIGTERM);
    EXPECT_EQ(exit.status, 0);
    EXPECT_TRUE(etcd.range_prefix("kv/").size() == 1) << "only a's node key should be left";
    EXPECT_TRUE(not_found(lookup_until(*a, "kept", not_found, scaled(10s))));
    EXPECT_EQ(registry_info(*a).at("cluster_nodes"), "1");
}

TEST(Cluster, ASecondNodeOfTheSameNameIsRefused)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    auto a = start_node(etcd, "a");
    TemporaryDirectory run_dir;
    const auto result = run_program({ binary("registryd"), "--run-dir", run_dir.path(), "--cluster", etcd.client_urls(),
        "--node", "a", "--lease-ttl", "2" });
    EXPECT_EQ(result.exit_code, 1) << result.err;
    EXPECT_NE(result.err.find("unable to join the cluster as node a: the name is held by a live node"), std::string::npos) << result.err;
    // The first one is untouched.
    EXPECT_EQ(registry_info(*a).at("cluster_state"), "joined");
}

TEST(Cluster, ClusterOptionsAreCheckedBeforeAnythingStarts)
{
    TemporaryDirectory run_dir;
    auto usage = [&](std::vector<std::string> arguments) {
        arguments.insert(arguments.begin(), { binary("registryd"), "--run-dir", run_dir.path() });
        return run_program(arguments);
    };
    auto missing_node = usage({ "--cluster", "http://127.0.0.1:1" });
    EXPECT_EQ(missing_node.exit_code, 2);
    EXPECT_NE(missing_node.err.find("--cluster needs --node"), std::string::npos) << missing_node.err;
    auto bad_url = usage({ "--cluster", "https://127.0.0.1:1", "--node", "a" });
    EXPECT_EQ(bad_url.exit_code, 2);
    EXPECT_NE(bad_url.err.find("not an http:// URL"), std::string::npos) << bad_url.err;
    auto bad_node = usage({ "--cluster", "http://127.0.0.1:1", "--node", "a/b" });
    EXPECT_EQ(bad_node.exit_code, 2);
    // Nobody listens on port 1: registryd says so and exits 1 without serving.
    auto unreachable = usage({ "--cluster", "http://127.0.0.1:1", "--node", "a" });
    EXPECT_EQ(unreachable.exit_code, 1);
    EXPECT_NE(unreachable.err.find("unable to join the cluster at http://127.0.0.1:1"), std::string::npos) << unreachable.err;
}

TEST(Cluster, WithEtcdDownCreateFailsClearlyLocalBucketsServeAndTheClusterRecovers)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    auto a = start_node(etcd, "a");
    const Value created = a->call({ "CREATE", "local" });
    ASSERT_FALSE(created.is_error()) << created.text;
    auto bucket = kv::Client::connect(text_of(created, "socket"));
    ASSERT_EQ(bucket.call({ "SET", "k", "v" }).text, "OK");

    etcd.stop_all();
    const Value refused = a->call({ "CREATE", "new" });
    ASSERT_TRUE(refused.is_error());
    EXPECT_EQ(refused.text.rfind("CLUSTERDOWN unable to create bucket new: unable to claim its name in the cluster: ", 0), 0u) << refused.text;
    EXPECT_TRUE(local_names(*a) == std::set<std::string> { "local" });
    EXPECT_EQ(bucket.call({ "GET", "k" }).text, "v");
    EXPECT_FALSE(a->call({ "LOOKUP", "local" }).is_error());
    // Writes go on until the lease's validity ends, then are refused (the
    // fence); reads go on.
    Value write;
    const auto fence_deadline = Clock::now() + scaled(20s);
    do
        write = bucket.call({ "SET", "k", "during" });
    while (!write.is_error() && Clock::now() < fence_deadline);
    ASSERT_TRUE(write.is_error()) << "writes were still acknowledged long after the lease's TTL";
    EXPECT_EQ(write.text.rfind("CLUSTERDOWN ", 0), 0u) << write.text;
    EXPECT_EQ(bucket.call({ "GET", "k" }).text, "during");
    // The bucket refuses from 50 ms before the lease's validity ends (the
    // fence's margin): registryd's own count is at most that by now.
    EXPECT_LE(std::stoll(registry_info(*a).at("cluster_lease_valid_ms")), 50);

    etcd.restart_all();
    const auto until = Clock::now() + scaled(30s);
    Value again;
    do {
        again = a->call({ "CREATE", "new" });
        if (!again.is_error())
            break;
        std::this_thread::sleep_for(20ms);
    } while (Clock::now() < until);
    ASSERT_FALSE(again.is_error()) << again.text;
    EXPECT_EQ(text_of(again, "node"), "a");
    // The fence moved on with the lease (kept or replaced and claimed again).
    Value resumed;
    const auto resume_deadline = Clock::now() + scaled(20s);
    while ((resumed = bucket.call({ "SET", "k", "after" })).is_error() && Clock::now() < resume_deadline)
        std::this_thread::sleep_for(20ms);
    EXPECT_EQ(resumed.text, "OK");
    // The name made before the outage is still this node's in etcd.
    const auto names = etcd.range_prefix("kv/names/");
    EXPECT_EQ(names.count("kv/names/local"), 1u);
    EXPECT_EQ(names.count("kv/names/new"), 1u);
}

TEST(Cluster, ANodeThatLostItsLeaseStopsItsCopyOfANameAnotherNodeTook)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    auto a = start_node(etcd, "a");
    auto b = start_node(etcd, "b");
    const Value old_copy = b->call({ "CREATE", "contested" });
    ASSERT_FALSE(old_copy.is_error()) << old_copy.text;
    auto monitor = b->monitor("contested");

    // A client writes to b's bucket all along; the bucket runs on while its
    // registryd is stopped.
    std::atomic<bool> writing { true };
    std::atomic<long long> last_acknowledged_ns { 0 };
    std::atomic<long long> acknowledged { 0 }, refused { 0 };
    std::string refusal;
    std::thread writer([&] {
        auto client = kv::Client::connect(text_of(old_copy, "socket"));
        for (long long i = 0; writing; ++i) {
            const Value reply = client.call({ "SET", "k", std::to_string(i) });
            if (reply.is_error()) {
                if (refused++ == 0)
                    refusal = reply.text;
            } else {
                ++acknowledged;
                last_acknowledged_ns = Clock::now().time_since_epoch().count();
            }
        }
    });
    while (acknowledged == 0)
        std::this_thread::yield();

    ASSERT_EQ(kill_process(b->pid(), SIGSTOP), 0);
    // b's lease expires while it is stopped; a sees the name free and takes it.
    const Value freed = lookup_until(*a, "contested", not_found);
    const Value taken = a->call({ "CREATE", "contested" });
    const auto taken_at = Clock::now().time_since_epoch().count();
    // No write was acknowledged by b's copy once a could own the name.
    EXPECT_LT(last_acknowledged_ns.load(), taken_at) << "b's bucket acknowledged a write after a took the name";
    ASSERT_EQ(kill_process(b->pid(), SIGCONT), 0);
    writing = false;
    writer.join();
    EXPECT_GT(refused.load(), 0);
    EXPECT_EQ(refusal.rfind("CLUSTERDOWN ", 0), 0u) << refusal;
    ASSERT_TRUE(not_found(freed)) << freed.text;
    ASSERT_FALSE(taken.is_error()) << taken.text;
    ASSERT_EQ(text_of(taken, "node"), "a");

    // b finds its lease gone, takes a new one, and stops its copy.
    set_receive_timeout(monitor, scaled(30s));
    const Value ended = monitor.read_reply();
    EXPECT_FALSE(ended.is_error()) << ended.text;
    EXPECT_NE(b->log().find("its name was taken by node a while this node's lease was lost; stopping this node's copy"), std::string::npos)
        << b->log();
    EXPECT_TRUE(local_names(*b).empty());
    EXPECT_EQ(registry_info(*b).at("cluster_leases_lost"), "1");
    // The name is a's, everywhere.
    const Value now = lookup_until(*b, "contested", [](const Value& reply) { return text_of(reply, "node") == "a"; });
    EXPECT_EQ(pid_of(now), pid_of(taken));
}

TEST(Cluster, LosingOneOfThreeEtcdMembersLosesNoName)
{
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd(EtcdOptions { 3 });
    auto a = start_node(etcd, "a", 5);
    auto b = start_node(etcd, "b", 5);
    for (int i = 0; i < 20; ++i)
        ASSERT_FALSE((i % 2 ? a : b)->call({ "CREATE", "n" + std::to_string(i) }).is_error());
    etcd.kill_member(0);
    // New names are still claimed (after an election if member 0 led) ...
    const auto until = Clock::now() + scaled(30s);
    Value created;
    do {
        created = a->call({ "CREATE", "after" });
        if (!created.is_error())
            break;
        std::this_thread::sleep_for(20ms);
    } while (Clock::now() < until);
    ASSERT_FALSE(created.is_error()) << created.text;
    // ... and every name made before is still there, with its node.
    const auto names = etcd.range_prefix("kv/names/");
    EXPECT_EQ(names.size(), 21u);
    for (int i = 0; i < 20; ++i) {
        const Value seen = lookup_until(*(i % 2 ? b : a), "n" + std::to_string(i), found);
        EXPECT_EQ(text_of(seen, "node"), i % 2 ? "a" : "b") << "n" << i;
    }
    EXPECT_EQ(registry_info(*a).at("cluster_leases_lost"), "0");
    EXPECT_EQ(registry_info(*b).at("cluster_leases_lost"), "0");
}

TEST(Cluster, ARequestForAnotherNodesBucketIsServedThereThroughTheAddressLookupGives)
{
    // The guide's router test: a name on node a, asked for on node b, is
    // served on a and answered here. With --listen-tcp every bucket serves
    // RESP on TCP to clients that AUTH; LOOKUP on b gives a's bucket's address.
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    KV_REQUIRE(!find_program("redis-cli").empty(), "redis-cli (redis-tools) is not installed");
    EtcdCluster etcd;
    TemporaryDirectory secrets;
    const std::string password = "correct horse battery staple";
    const std::string password_file = secrets.path() + "/password";
    std::ofstream(password_file) << password << "\n";
    ASSERT_EQ(::chmod(password_file.c_str(), 0600), 0);
    const std::vector<std::string> tcp { "--listen-tcp", "127.0.0.1:0", "--password-file", password_file };
    auto a = start_node(etcd, "a", 2, tcp);
    auto b = start_node(etcd, "b", 2, tcp);

    const Value created = a->call({ "CREATE", "shopping" });
    ASSERT_FALSE(created.is_error()) << created.text;
    const std::string address = text_of(created, "address");
    ASSERT_EQ(address.rfind("127.0.0.1:", 0), 0u) << address;
    const Value seen = lookup_until(*b, "shopping", [](const Value& reply) { return !text_of(reply, "address").empty(); });
    ASSERT_EQ(text_of(seen, "node"), "a");
    ASSERT_EQ(text_of(seen, "address"), address);

    const std::string host = address.substr(0, address.rfind(':'));
    const std::string port = address.substr(address.rfind(':') + 1);
    auto redis_cli = [&](std::vector<std::string> arguments) {
        arguments.insert(arguments.begin(), { find_program("redis-cli"), "--no-auth-warning", "-h", host, "-p", port, "-a", password });
        return run_program(arguments);
    };
    EXPECT_EQ(redis_cli({ "SET", "milk", "3" }).out, "OK\n");
    // Served by a's bucket: its own Unix socket has the value.
    auto bucket = kv::Client::connect(text_of(created, "socket"));
    EXPECT_EQ(bucket.call({ "GET", "milk" }).text, "3");
    EXPECT_EQ(redis_cli({ "GET", "milk" }).out, "3\n");
    // Without the password, nothing.
    const auto refused = run_program({ find_program("redis-cli"), "-h", host, "-p", port, "GET", "milk" });
    EXPECT_NE(refused.out.find("NOAUTH Authentication required."), std::string::npos) << refused.out << refused.err;
}
