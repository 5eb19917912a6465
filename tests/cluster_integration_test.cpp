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
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <latch>
#include <optional>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "etcd_fixture.h"
#include "history_checker.h"
#include "reference_redis.h"
#include "tcp_listener.h"

using namespace kv::test;
using kv::resp::Value;
using Clock = std::chrono::steady_clock;

namespace {

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


// Asks `condition` until it holds or the deadline passes; says which.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds deadline = scaled(30s))
{
    const auto until = Clock::now() + deadline;
    while (!condition()) {
        if (Clock::now() >= until)
            return false;
        std::this_thread::sleep_for(5ms); // between two questions, not instead of an answer
    }
    return true;
}

// A client of one bucket name that writes to it wherever it is, as a client
// on any node would: it asks a registry where the name is (LOOKUP; the first
// of `registries` that answers within its deadline), connects to the
// bucket's TCP address, AUTHs, and sends SETs of keys of its own
// ("c<number>-<sequence>"), each recorded in `history` with its owner (the
// bucket's node and pid), its invoke and complete instants and its outcome.
// On a refusal or a failure it asks again where the name is; so does a client
// that connects anew every `writes_per_connection` writes (0: never), as new
// clients keep coming, while one that keeps its connection (the bucket it
// found first, for as long as it serves) is the stale route a moved name
// must not let write.
class ContestedNameWriter {
public:
    ContestedNameWriter(int number, std::vector<const RegistryDaemon*> registries, std::size_t writes_per_connection,
        std::string password, History& history)
        : number_(number)
        , registries_(std::move(registries))
        , writes_per_connection_(writes_per_connection)
        , password_(std::move(password))
        , history_(history)
    {
    }

    // One write, or one attempt to find where to send it.
    void write_once()
    {
        if (!bucket_ && !resolve())
            return;
        Write write { owner_, "c" + std::to_string(number_) + "-" + std::to_string(sequence_), "", 0, 0, Outcome::unknown, "" };
        write.value = "v" + write.key;
        ++sequence_;
        write.invoked_ns = history_now_ns();
        try {
            const Value reply = call(*bucket_, { "SET", write.key, write.value });
            write.completed_ns = history_now_ns();
            if (reply.type == Value::Type::simple && reply.text == "OK") {
                write.outcome = Outcome::acknowledged;
            } else {
                write.outcome = Outcome::refused; // an error reply: SET did nothing
                write.reply = reply.text;
                bucket_.reset(); // the name may have moved: ask again
            }
        } catch (const std::exception& failure) {
            write.completed_ns = history_now_ns();
            write.reply = failure.what();
            bucket_.reset();
        }
        history_.add(std::move(write));
        if (bucket_ && writes_per_connection_ != 0 && ++writes_on_connection_ >= writes_per_connection_)
            bucket_.reset();
    }

private:
    static constexpr auto call_timeout = 2s; // a reply not back by then: outcome unknown

    // One request on `connection`, its reply parsed; throws if none comes in time.
    static Value call(RawConnection& connection, const std::vector<std::string>& request)
    {
        const std::string bytes = connection.call(request);
        std::size_t consumed = 0;
        Value reply;
        kv::resp::parse_value(bytes, consumed, reply);
        return reply;
    }

    // Finds the name's bucket and connects to it; false if it cannot now.
    bool resolve()
    {
        for (const RegistryDaemon* registry : registries_) {
            try {
                auto client = kv::Client::connect(registry->run_dir() + "/registry.sock",
                    kv::ConnectOptions { std::nullopt, Clock::now() + std::chrono::milliseconds(500), std::nullopt });
                const Value where = client.call({ "LOOKUP", "contested" });
                std::string address;
                if (where.is_error() || !where.text_field("address", address) || address.empty())
                    continue;
                Owner owner;
                owner.pid = pid_of(where);
                if (!where.text_field("node", owner.node))
                    continue;
                RawConnection bucket = RawConnection::tcp(address);
                const timeval timeout { std::chrono::duration_cast<std::chrono::seconds>(call_timeout).count(), 0 };
                ::setsockopt(bucket.fd(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
                if (call(bucket, { "AUTH", password_ }).text != "OK")
                    continue;
                bucket_.emplace(std::move(bucket));
                writes_on_connection_ = 0;
                owner_ = owner;
                return true;
            } catch (const std::exception&) {
                // This registry did not answer in time (it is stopped), or the bucket went: try the next.
            }
        }
        std::this_thread::sleep_for(5ms); // between two questions, not instead of an answer
        return false;
    }

    int number_;
    std::vector<const RegistryDaemon*> registries_;
    std::size_t writes_per_connection_;
    std::size_t writes_on_connection_ = 0;
    std::string password_;
    History& history_;
    std::optional<RawConnection> bucket_;
    Owner owner_;
    long long sequence_ = 0;
};
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
    // Clients write to the name all along, wherever it is (ContestedNameWriter),
    // and every write is recorded; a checker then reads the history
    // (history_checker.h): one owner at a time, nothing the final owner
    // acknowledged lost.
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    TemporaryDirectory secrets;
    const std::string password = "history";
    const std::string password_file = write_password_file(secrets, "password", password);
    const std::vector<std::string> tcp { "--listen-tcp", "127.0.0.1:0", "--password-file", password_file };
    auto a = start_node(etcd, "a", 2, tcp);
    auto b = start_node(etcd, "b", 2, tcp);
    const Value old_copy = b->call({ "CREATE", "contested" });
    ASSERT_FALSE(old_copy.is_error()) << old_copy.text;
    const Owner old_owner { "b", pid_of(old_copy) };
    auto monitor = b->monitor("contested");

    // Two clients: one asks b first where the name is and keeps its
    // connection while it is served; one asks a first and connects anew
    // every 20 writes.
    History history;
    std::atomic<bool> writing { true };
    std::vector<std::thread> clients;
    // However the test ends (a failed ASSERT returns), the clients stop.
    const std::shared_ptr<void> stop_clients(nullptr, [&](void*) {
        writing = false;
        for (auto& client : clients)
            if (client.joinable())
                client.join();
    });
    for (int number = 0; number < 2; ++number)
        clients.emplace_back([&, number] {
            ContestedNameWriter client(number,
                number == 0 ? std::vector<const RegistryDaemon*> { b.get(), a.get() } : std::vector<const RegistryDaemon*> { a.get(), b.get() },
                number == 0 ? 0 : 20, password, history);
            while (writing)
                client.write_once();
        });
    ASSERT_TRUE(eventually([&] { return history.acknowledged_by(old_owner) > 0; })) << "nobody could write to b's bucket";

    // b's registryd stops; its bucket runs on. b's lease expires while it is
    // stopped; a sees the name free and takes it.
    ASSERT_EQ(kill_process(b->pid(), SIGSTOP), 0);
    const Value freed = lookup_until(*a, "contested", not_found);
    const Value taken = a->call({ "CREATE", "contested" });
    const auto taken_at = history_now_ns();
    ASSERT_TRUE(not_found(freed)) << freed.text;
    ASSERT_FALSE(taken.is_error()) << taken.text;
    ASSERT_EQ(text_of(taken, "node"), "a");
    const Owner new_owner { "a", pid_of(taken) };
    // The clients find a's bucket and write to it while b is still stopped.
    EXPECT_TRUE(eventually([&] { return history.acknowledged_by(new_owner) >= 50; }));
    ASSERT_EQ(kill_process(b->pid(), SIGCONT), 0);

    // b finds its lease gone, takes a new one, and stops its copy.
    set_receive_timeout(monitor, scaled(30s));
    const Value ended = monitor.read_reply();
    EXPECT_FALSE(ended.is_error()) << ended.text;
    EXPECT_NE(b->log().find("its name was taken by node a while this node's lease was lost; stopping this node's copy"), std::string::npos)
        << b->log();
    EXPECT_TRUE(local_names(*b).empty());
    EXPECT_EQ(registry_info(*b).at("cluster_leases_lost"), "1");
    // The name is a's, everywhere; the clients go on writing to it a while.
    const Value now = lookup_until(*b, "contested", [](const Value& reply) { return text_of(reply, "node") == "a"; });
    EXPECT_EQ(pid_of(now), new_owner.pid);
    const auto before = history.acknowledged_by(new_owner);
    EXPECT_TRUE(eventually([&] { return history.acknowledged_by(new_owner) >= before + 50; }));
    writing = false;
    for (auto& client : clients)
        client.join();

    // The final owner's data, read on a's own socket.
    auto bucket = kv::Client::connect(text_of(taken, "socket"));
    std::map<std::string, std::string> final_state;
    const Value keys = bucket.call({ "KEYS", "*" });
    for (std::size_t first = 0; first < keys.elements.size(); first += 1000) {
        std::vector<std::string> mget { "MGET" };
        for (std::size_t i = first; i < keys.elements.size() && i < first + 1000; ++i)
            mget.push_back(keys.elements[i].text);
        const Value values = bucket.call(mget);
        ASSERT_EQ(values.elements.size(), mget.size() - 1);
        for (std::size_t i = 1; i < mget.size(); ++i)
            final_state[mget[i]] = values.elements[i - 1].text;
    }

    const auto writes = history.writes();
    const auto problems = check_history(writes, new_owner, final_state);
    std::string shown;
    for (std::size_t i = 0; i < problems.size() && i < 20; ++i)
        shown += problems[i] + "\n";
    EXPECT_TRUE(problems.empty()) << problems.size() << " problems in a history of " << writes.size() << " writes:\n" << shown;

    // And what this scenario must show: b acknowledged writes, then refused
    // them (CLUSTERDOWN, the fence) before a could take the name; a
    // acknowledged writes after.
    std::size_t refused_by_old = 0;
    std::int64_t last_acknowledged_by_old = 0;
    for (const auto& write : writes) {
        if (write.owner == old_owner && write.outcome == Outcome::acknowledged)
            last_acknowledged_by_old = std::max(last_acknowledged_by_old, write.completed_ns);
        if (write.outcome == Outcome::refused) {
            EXPECT_EQ(write.owner, old_owner) << write.key << ": " << write.reply;
            EXPECT_EQ(write.reply.rfind("CLUSTERDOWN ", 0), 0u) << write.reply;
            refused_by_old += write.owner == old_owner;
        }
    }
    EXPECT_GT(refused_by_old, 0u);
    EXPECT_LT(last_acknowledged_by_old, taken_at) << "b's bucket acknowledged a write after a took the name";
    EXPECT_GT(history.acknowledged_by(old_owner), 0u);
    EXPECT_GT(history.acknowledged_by(new_owner), 100u);
}

TEST(Cluster, ANodeWhoseKeyIsHeldWhenItReplacesALostLeaseRegistersItOnceItIsFree)
{
    // b's lease expires while it is stopped; meanwhile its node key is taken
    // (as by another registryd of the same node name), so b's registration
    // under its new lease fails. b claims its names all the same, and puts
    // its key again, every 500 ms, until it is free.
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    auto b = start_node(etcd, "b");
    ASSERT_FALSE(b->call({ "CREATE", "kept" }).is_error());
    ASSERT_EQ(kill_process(b->pid(), SIGSTOP), 0);
    ASSERT_TRUE(eventually([&] { return etcd.range_prefix("kv/nodes/").empty(); })) << "b's lease did not expire";
    etcd.put("kv/nodes/b", R"({"node":"b","pid":1,"instance":"impostor","address":""})");
    ASSERT_EQ(kill_process(b->pid(), SIGCONT), 0);
    ASSERT_TRUE(eventually([&] { return b->log().find("unable to register node b again: taken: pid 1, instance impostor") != std::string::npos; }))
        << b->log();
    // Its names are claimed again meanwhile.
    EXPECT_TRUE(eventually([&] { return etcd.range_prefix("kv/names/").count("kv/names/kept") == 1; }));
    EXPECT_EQ(registry_info(*b).at("cluster_state"), "joined");

    etcd.remove("kv/nodes/b");
    const std::string pid = "\"pid\":" + std::to_string(b->pid());
    EXPECT_TRUE(eventually([&] {
        const auto nodes = etcd.range_prefix("kv/nodes/");
        return nodes.count("kv/nodes/b") == 1 && nodes.at("kv/nodes/b").find(pid) != std::string::npos;
    })) << "b never registered its node key again\n"
        << b->log();
    // It logs so once etcd's reply is in (a moment after etcd has the key).
    EXPECT_TRUE(eventually([&] { return b->log().find("cluster: node b registered again") != std::string::npos; })) << b->log();
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

TEST(Cluster, ANodeListeningOnEveryAddressIsToldToSayWhereOtherNodesReachIt)
{
    // 0.0.0.0 is no address another node can connect to: a node bound there
    // must say which address is its (--advertise-address), which LOOKUP on
    // every node then gives for its buckets.
    KV_REQUIRE(etcd_missing().empty(), etcd_missing());
    EtcdCluster etcd;
    TemporaryDirectory secrets;
    const std::string password = "every address";
    const std::string password_file = write_password_file(secrets, "password", password);
    const std::vector<std::string> everywhere { "--listen-tcp", "0.0.0.0:0", "--password-file", password_file };

    TemporaryDirectory run_dir;
    // Under timeout(1): a registryd that wrongly starts is ended, not waited for.
    std::vector<std::string> refused { find_program("timeout"), "10", binary("registryd"), "--run-dir", run_dir.path(), "--cluster",
        etcd.client_urls(), "--node", "a" };
    refused.insert(refused.end(), everywhere.begin(), everywhere.end());
    const auto result = run_program(refused);
    EXPECT_EQ(result.exit_code, 2) << result.err;
    EXPECT_EQ(result.err,
        "registryd: --listen-tcp 0.0.0.0:0 listens on every address, which other nodes cannot connect to: give --advertise-address, the "
        "address they reach this node at (see registryd --help)\n");
    EXPECT_TRUE(etcd.range_prefix("kv/nodes/").empty()) << "a refused node joined the cluster";

    std::vector<std::string> advertised = everywhere;
    advertised.insert(advertised.end(), { "--advertise-address", "127.0.0.1" });
    auto a = start_node(etcd, "a", 2, advertised);
    auto b = start_node(etcd, "b", 2, { "--listen-tcp", "127.0.0.1:0", "--password-file", password_file });
    const Value created = a->call({ "CREATE", "shopping" });
    ASSERT_FALSE(created.is_error()) << created.text;
    const std::string address = text_of(created, "address");
    ASSERT_EQ(address.rfind("127.0.0.1:", 0), 0u) << address;
    const Value seen = lookup_until(*b, "shopping", [](const Value& reply) { return !text_of(reply, "address").empty(); });
    EXPECT_EQ(text_of(seen, "address"), address);
    // The node's own key names the advertised address too, with its registry's port.
    const auto nodes = etcd.range_prefix("kv/nodes/");
    ASSERT_EQ(nodes.count("kv/nodes/a"), 1u);
    const std::string registry_port = std::to_string(kv::address_port(registry_info(*a).at("tcp_listen")));
    EXPECT_NE(nodes.at("kv/nodes/a").find("\"address\":\"127.0.0.1:" + registry_port + "\""), std::string::npos) << nodes.at("kv/nodes/a");
    // And a client that reaches that address is served by a's bucket.
    RawConnection client = RawConnection::tcp(address);
    EXPECT_NE(client.call({ "AUTH", password }).find("OK"), std::string::npos);
    EXPECT_NE(client.call({ "SET", "milk", "3" }).find("OK"), std::string::npos);
    EXPECT_EQ(kv::Client::connect(text_of(created, "socket")).call({ "GET", "milk" }).text, "3");
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
    const std::string password_file = write_password_file(secrets, "password", password);
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
