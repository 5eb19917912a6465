// Faults: what the machine can do to kv (run out of descriptors, processes
// or shared memory, lose a binary, SIGKILL the daemon) and what clients can
// do all at once (chaos). After each: no zombie, nothing leaked, nothing
// acknowledged lost, and registryd still serving.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "run_dir.h"

using namespace kv::test;
using kv::resp::Value;

namespace {

// registryd and bucketd copied where any uid can run them, and removable.
struct CopiedBinaries {
    CopiedBinaries()
    {
        ::chmod(directory.path().c_str(), 0755);
        for (const char* name : { "registryd", "bucketd" })
            std::filesystem::copy_file(binary(name), directory.path() + "/" + name);
    }
    TemporaryDirectory directory;
};

// registryd in its own mount namespace, with a /dev/shm of `size` (tmpfs syntax: "200k").
DaemonOptions with_dev_shm_of(const std::string& size)
{
    DaemonOptions options;
    options.wrapper = { "unshare", "--mount", "--propagation", "private", "sh", "-c",
        "mount -t tmpfs -o size=" + size + " tmpfs /dev/shm && exec \"$0\" \"$@\"" };
    return options;
}

// CREATE b0, b1, ... until one fails; returns how many succeeded and the failure.
std::pair<int, std::string> create_until_refused(const RegistryDaemon& daemon, int at_most)
{
    for (int i = 0; i < at_most; ++i) {
        auto reply = daemon.call({ "CREATE", "b" + std::to_string(i) });
        if (reply.is_error())
            return { i, reply.text };
    }
    return { at_most, "" };
}

} // namespace

TEST(Faults, NewRegistrydNeverTouchesAnotherRunDirsSegments)
{
    RegistryDaemon other;
    auto other_bucket = other.create("theirs");
    kv::Client::connect(other_bucket.field("socket")->text).call({ "SET", "k", "v" });
    auto other_segments = bucket_segments(other.run_dir());
    ASSERT_EQ(other_segments.size(), 1u);

    TemporaryDirectory directory;
    {
        RegistryDaemon first({}, directory.path());
        first.create("mine");
        first.stop(SIGKILL);
    }
    RegistryDaemon second({}, directory.path());
    EXPECT_EQ(bucket_segments(other.run_dir()), other_segments);
    EXPECT_EQ(kv::Client::connect(other_bucket.field("socket")->text).call({ "GET", "k" }).text, "v");
}

TEST(Faults, MissingBucketdIsACreateErrorWithNoZombie)
{
    CopiedBinaries binaries;
    DaemonOptions options;
    options.binary_dir = binaries.directory.path();
    RegistryDaemon daemon(options);
    daemon.create("before");
    std::filesystem::remove(binaries.directory.path() + "/bucketd");
    auto reply = daemon.call({ "CREATE", "after" });
    EXPECT_EQ(reply.text, "ERR unable to create bucket after: unable to start " + binaries.directory.path()
            + "/bucketd: No such file or directory");
    EXPECT_EQ(children_of(daemon.pid()).size(), 1u);
    expect_no_zombie(daemon.pid());
    EXPECT_EQ(daemon.call({ "LOOKUP", "after" }).text, "NOTFOUND no bucket named after");
    EXPECT_EQ(daemon.call({ "LIST" }).elements.size(), 1u);
}

TEST(Faults, OutOfDescriptorsKeepsServingAndRecovers)
{
    constexpr int limit = 40;
    DaemonOptions options;
    options.wrapper = { "prlimit", "--nofile=" + std::to_string(limit) + ":" + std::to_string(limit) };
    RegistryDaemon daemon(options);
    auto control = daemon.connect();
    ASSERT_EQ(wait_for_connections(daemon.pid(), 1), 1u);
    auto free_descriptors = limit - static_cast<int>(open_descriptor_count(daemon.pid(), limit));
    std::vector<kv::Client> clients;
    for (int i = 0; i < free_descriptors; ++i) {
        clients.push_back(kv::Client::connect(kv::registry_socket_path(daemon.run_dir())));
        ASSERT_EQ(clients.back().call({ "PING" }).text, "PONG") << i;
    }
    // Every descriptor is in use: the next client waits in the backlog...
    auto waiting = kv::Client::connect(kv::registry_socket_path(daemon.run_dir()));
    waiting.send_raw("PING\r\n");
    EXPECT_FALSE(wait_readable(waiting.fd(), 300ms)) << "served with no descriptor left? " << free_descriptors << " "
                                                      << open_descriptor_count(daemon.pid(), limit) << "\n" << daemon.log();
    // ...the clients it has are still served, and CREATE fails cleanly.
    EXPECT_EQ(control.call({ "PING" }).text, "PONG");
    auto create = control.call({ "CREATE", "x" });
    EXPECT_EQ(create.text.rfind("ERR unable to create bucket x: unable to create segment /kv." + daemon.instance() + ".b1.", 0), 0u)
        << create.text;
    EXPECT_NE(create.text.find(": Too many open files"), std::string::npos) << create.text;
    EXPECT_EQ(control.call({ "LOOKUP", "x" }).text, "NOTFOUND no bucket named x");
    // While descriptors are short, CREATE keeps failing cleanly, whichever call runs out.
    clients.erase(clients.end() - 3, clients.end());
    ASSERT_TRUE(wait_readable(waiting.fd(), 10s));
    EXPECT_EQ(waiting.read_reply().text, "PONG");
    for (int i = 0; i < 3; ++i) {
        auto short_of_descriptors = control.call({ "CREATE", "y" });
        EXPECT_NE(short_of_descriptors.text.find("Too many open files"), std::string::npos) << short_of_descriptors.text;
        EXPECT_EQ(control.call({ "LOOKUP", "y" }).text, "NOTFOUND no bucket named y");
    }
    expect_no_zombie(daemon.pid());
    EXPECT_TRUE(children_of(daemon.pid()).empty());
    EXPECT_TRUE(bucket_segments(daemon.run_dir()).empty()) << "a failed CREATE left its segment";
    EXPECT_TRUE(files_in(daemon.run_dir() + "/buckets").empty()) << "a failed CREATE left its socket";
    // Descriptors free up: CREATE works again.
    clients.erase(clients.end() - 10, clients.end());
    const auto connections = clients.size() + 2; // and `control` and `waiting`
    ASSERT_EQ(wait_for_connections(daemon.pid(), connections), connections);
    auto again = control.call({ "CREATE", "x" });
    EXPECT_FALSE(again.is_error()) << again.text;
    EXPECT_NE(daemon.log().find("Too many open files"), std::string::npos);
}

TEST(Faults, AMaxBucketsTheDescriptorLimitCannotHoldIsToldAtStart)
{
    DaemonOptions options;
    options.wrapper = { "prlimit", "--nofile=100:200" }; // registryd raises its soft limit to the hard one
    options.arguments = { "--max-buckets", "100" };
    RegistryDaemon too_many(options);
    EXPECT_NE(too_many.log().find(" warning registryd[" + std::to_string(too_many.pid())
                  + "]: --max-buckets 100 cannot be reached: the descriptor limit (200) leaves room for at most "
                    "68 live buckets, two descriptors each; past that, CREATE fails"),
        std::string::npos)
        << too_many.log();

    options.arguments = { "--max-buckets", "68" };
    RegistryDaemon enough(options);
    EXPECT_EQ(enough.log().find("cannot be reached"), std::string::npos) << enough.log();
}

TEST(Faults, ForkFailureIsACreateErrorWithNoHalfMadeEntry)
{
    KV_REQUIRE_ROOT("to run registryd as a throwaway uid with a process limit");
    KV_REQUIRE(!find_program("prlimit").empty() && !find_program("setpriv").empty(), "prlimit and setpriv on PATH");
    CopiedBinaries binaries;
    TemporaryDirectory run_dir;
    // A uid nothing else on the machine uses, so the process limit is ours alone.
    constexpr uid_t uid = 64999;
    ASSERT_EQ(::chown(run_dir.path().c_str(), uid, uid), 0);
    DaemonOptions options;
    options.binary_dir = binaries.directory.path();
    options.run_dir = run_dir.path();
    options.wrapper = { "prlimit", "--nproc=4:4", "setpriv", "--reuid=64999", "--regid=64999", "--clear-groups" };
    RegistryDaemon daemon(options);
    auto [created, failure] = create_until_refused(daemon, 10);
    EXPECT_EQ(created, 3); // registryd itself is the fourth process
    EXPECT_NE(failure.find("Resource temporarily unavailable"), std::string::npos) << failure;
    EXPECT_EQ(daemon.call({ "LIST" }).elements.size(), static_cast<std::size_t>(created));
    EXPECT_EQ(children_of(daemon.pid()).size(), static_cast<std::size_t>(created));
    expect_no_zombie(daemon.pid());
    // A slot frees up, and CREATE works again.
    EXPECT_EQ(daemon.call({ "STOP", "b0" }).text, "OK");
    EXPECT_FALSE(daemon.call({ "CREATE", "again" }).is_error());
}

TEST(Faults, FullDevShmIsACreateErrorAndLeavesNothing)
{
    KV_REQUIRE_ROOT("to give registryd its own small /dev/shm");
    KV_REQUIRE(!find_program("unshare").empty(), "unshare on PATH");
    RegistryDaemon daemon(with_dev_shm_of("200k"));
    auto [created, failure] = create_until_refused(daemon, 10);
    EXPECT_GE(created, 1);
    EXPECT_LT(created, 10);
    EXPECT_NE(failure.find("No space left on device"), std::string::npos) << failure;
    EXPECT_EQ(daemon.call({ "LIST" }).elements.size(), static_cast<std::size_t>(created));
    expect_no_zombie(daemon.pid());
    // Seen from registryd's side: one segment per live bucket and the name table, nothing more.
    auto shm = files_in("/proc/" + std::to_string(daemon.pid()) + "/root/dev/shm");
    EXPECT_EQ(shm.size(), static_cast<std::size_t>(created) + 1);
    EXPECT_EQ(files_in(daemon.run_dir() + "/buckets").size(), static_cast<std::size_t>(created));
}

TEST(Faults, DevShmFillingWhileABucketGrowsIsFullNotACrash)
{
    KV_REQUIRE_ROOT("to give registryd its own small /dev/shm");
    KV_REQUIRE(!find_program("unshare").empty(), "unshare on PATH");
    RegistryDaemon daemon(with_dev_shm_of("4m"));
    auto bucket = daemon.create("grows");
    auto client = kv::Client::connect(bucket.field("socket")->text);
    set_receive_timeout(client, 20s);
    // The bucket's segment is 256 MiB, but /dev/shm holds 4 MiB: it fills first.
    const std::string value(100 * 1024, 'v');
    int stored = 0;
    kv::resp::Value reply;
    while ((reply = client.call({ "SET", "k" + std::to_string(stored), value })).text == "OK")
        ++stored;
    EXPECT_EQ(reply.text.rfind("FULL bucket is full", 0), 0u) << reply.text;
    EXPECT_GT(stored, 10);
    // Still alive, still serving, nothing lost.
    EXPECT_EQ(daemon.call({ "LOOKUP", "grows" }).field("pid")->integer, bucket.field("pid")->integer);
    for (int i = 0; i < stored; ++i)
        ASSERT_TRUE(client.call({ "GET", "k" + std::to_string(i) }).text == value) << i;
    EXPECT_EQ(client.call({ "DEL", "k0" }).integer, 1);
}

namespace {

// One client of the chaos test: SETs its own keys into random buckets and
// reads them back, remembering what each bucket process acknowledged.
struct Acknowledged {
    std::mutex lock;
    // (bucket pid, key) -> value of the last SET that pid acknowledged
    std::map<std::pair<long long, std::string>, std::string> values;
};

void chaos_client(const RegistryDaemon& daemon, int index, const std::vector<std::string>& names,
    const std::atomic<bool>& running, Acknowledged& acknowledged, std::atomic<long>& operations)
{
    std::mt19937 random(index);
    int sequence = 0;
    while (running) {
        const auto& name = names[random() % names.size()];
        try {
            auto bucket = daemon.call({ "LOOKUP", name });
            if (bucket.is_error())
                continue; // being recreated
            auto pid = bucket.field("pid")->integer;
            auto client = kv::Client::connect(bucket.field("socket")->text);
            set_receive_timeout(client, 10s);
            for (int i = 0; i < 20 && running; ++i) {
                std::string key = "c" + std::to_string(index) + "-" + std::to_string(random() % 50);
                std::string value = std::to_string(++sequence);
                if (client.call({ "SET", key, value }).text == "OK") {
                    std::lock_guard guard(acknowledged.lock);
                    acknowledged.values[{ pid, key }] = value;
                }
                ++operations;
            }
        } catch (const std::exception&) {
            // The bucket was killed under us: a clear error, never a hang. Carry on.
        }
    }
}

// The chaos clients: `count` threads of chaos_client, stopped and joined
// however the test leaves its scope.
struct ClientThreads {
    void start(const RegistryDaemon& daemon, const std::vector<std::string>& names, int count)
    {
        for (int i = 0; i < count; ++i)
            threads.emplace_back(chaos_client, std::cref(daemon), i, std::cref(names), std::cref(running),
                std::ref(acknowledged), std::ref(operations));
    }
    ~ClientThreads() { stop(); }
    void stop()
    {
        running = false;
        for (auto& thread : threads) {
            if (thread.joinable())
                thread.join();
        }
    }
    std::atomic<bool> running { true };
    std::atomic<long> operations { 0 };
    Acknowledged acknowledged;
    std::vector<std::thread> threads;
};

} // namespace

TEST(Faults, ChaosKillsAndClientsLoseNothingAcknowledged)
{
    RegistryDaemon daemon;
    auto control = daemon.connect();
    ASSERT_EQ(wait_for_connections(daemon.pid(), 1), 1u);
    auto baseline = open_descriptor_count(daemon.pid());

    std::vector<std::string> names;
    for (int i = 0; i < 6; ++i) {
        names.push_back("chaos" + std::to_string(i));
        daemon.create(names.back());
    }
    ClientThreads clients;
    clients.start(daemon, names, 4);
    auto& operations = clients.operations;
    auto& acknowledged = clients.acknowledged;

    // The killer: SIGKILL a random bucket, wait for registryd to report it,
    // create it again. Bounded by count and by time.
    std::mt19937 random(42);
    int kills = 0;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (kills < 150 && std::chrono::steady_clock::now() < deadline) {
        const auto& name = names[random() % names.size()];
        auto bucket = control.call({ "LOOKUP", name });
        ASSERT_FALSE(bucket.is_error()) << bucket.text;
        auto watcher = daemon.monitor(name);
        ASSERT_EQ(kill_process(bucket.field("pid")->integer, SIGKILL), 0);
        ASSERT_EQ(watcher.read_reply().text, "killed by SIGKILL") << daemon.log();
        ASSERT_FALSE(control.call({ "CREATE", name }).is_error());
        ++kills;
    }
    clients.stop();
    EXPECT_GT(kills, 10);
    EXPECT_GT(operations.load(), 100);

    // Every LIST entry is a live, unreaped-free process; every acknowledged
    // SET on a still-live bucket reads back exactly.
    auto list = control.call({ "LIST" });
    ASSERT_EQ(list.elements.size(), names.size());
    std::size_t checked = 0;
    for (const auto& entry : list.elements) {
        auto pid = entry.field("pid")->integer;
        EXPECT_EQ(kill_process(pid, 0), 0);
        auto client = kv::Client::connect(entry.field("socket")->text);
        for (const auto& [where, value] : acknowledged.values) {
            if (where.first != pid)
                continue;
            ASSERT_EQ(client.call({ "GET", where.second }).text, value) << where.second;
            ++checked;
        }
    }
    EXPECT_GT(checked, 0u);
    expect_no_zombie(daemon.pid());
    EXPECT_EQ(children_of(daemon.pid()).size(), names.size());
    EXPECT_EQ(bucket_segments(daemon.run_dir()).size(), names.size());
    EXPECT_EQ(files_in(daemon.run_dir() + "/buckets").size(), names.size());
    for (const auto& name : names)
        control.call({ "STOP", name });
    ASSERT_EQ(wait_for_connections(daemon.pid(), 1), 1u) << "registryd still holds connections of clients that hung up";
    EXPECT_EQ(open_descriptor_count(daemon.pid()), baseline);
    RecordProperty("kills", kills);
    RecordProperty("operations", static_cast<int>(operations.load()));
    std::printf("chaos: %d kills, %ld client operations, %zu acknowledged values checked\n", kills, operations.load(), checked);
}

TEST(Faults, ShutdownUnderLoadStopsAndCleansEverything)
{
    RegistryDaemon daemon;
    std::vector<std::string> names;
    std::vector<kv::UniqueFd> pidfds;
    for (int i = 0; i < 5; ++i) {
        names.push_back("busy" + std::to_string(i));
        pidfds.push_back(open_pidfd(static_cast<pid_t>(daemon.create(names.back()).field("pid")->integer)));
    }
    ClientThreads clients;
    clients.start(daemon, names, 4);
    auto& operations = clients.operations;
    // Let the load get going: wait until it has done real work, then SIGTERM.
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (operations < 200 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    ASSERT_GE(operations.load(), 200) << "the clients did no work";
    auto run_dir = daemon.run_dir();
    auto exit = daemon.stop(SIGTERM);
    clients.stop();
    EXPECT_EQ(exit.code, CLD_EXITED);
    EXPECT_EQ(exit.status, 0);
    for (auto& pidfd : pidfds)
        EXPECT_TRUE(wait_readable(pidfd.get(), 0ms));
    EXPECT_TRUE(segments_with_prefix(daemon.segment_prefix()).empty());
    EXPECT_TRUE(files_in(run_dir + "/buckets").empty());
}
