// kvbench: the measurements of BENCHMARKS.md that redis-benchmark cannot
// make, each next to the reference it is compared with. Run by bench/run.sh.
//
//   kvbench direct-get  --run-dir D --keys N --threads T --seconds S [--contended] [--batch B]
//   kvbench lookup      --run-dir D --buckets N --seconds S
//   kvbench create      --run-dir D --count N
//   kvbench kill        --run-dir D --count N      (kill-to-gone, the bare pidfd floor, and the floor with a monitor)
//   kvbench scale       --run-dir D --count N
//   kvbench fill        --run-dir D --count N      (N buckets left running, for the storm figures)
//   kvbench restart     --run-dir D --count N      (kill to restarted-and-ready, a permanent bucket)
//   kvbench reference-restart --socket P --count N (the same for a bucketd that another
//                                                   supervisor restarts, at socket P)
//   kvbench text        --run-dir D --keys N --clients C --seconds S --connects N --idle N
//                       (the text server, textd, beside the bucket's RESP socket)
//   kvbench cluster-create --run-dir NODE --local-run-dir D --etcd URL --count N
//                       (CREATE on a cluster node, on a plain registryd, and etcd's bare txn, in turn)
//   kvbench cluster-lookup --run-dir READER --owner-run-dir OWNER --local-run-dir D --buckets N --seconds S
//                       (LOOKUP of another node's name, of the owner's own, of a plain registryd's)
//   kvbench cluster-kill --run-dir READER --owner-run-dir OWNER --local-run-dir D --count N
//                       (a bucket killed on OWNER until READER's LOOKUP says NOTFOUND, beside `kill`)
//   kvbench cluster-node-kill --run-dir READER --owner-run-dir OWNER
//                       (OWNER's registryd killed until READER's LOOKUP says NOTFOUND: one repetition)
// Each prints one JSON object per line, for run.sh to tabulate.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spawn.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <latch>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "asio.h"
#include "bench_keys.h"
#include "client.h"
#include "name_table.h"
#include "instance_record.h"
#include "run_dir.h"
#include "shared_table.h"
#include "unique_fd.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace asio = boost::asio;

double microseconds(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

struct Percentiles {
    double median;
    double p99;
    double max;
};

Percentiles percentiles(std::vector<double> samples)
{
    std::sort(samples.begin(), samples.end());
    auto at = [&](double q) { return samples[std::min(samples.size() - 1, static_cast<std::size_t>(q * samples.size()))]; };
    return { at(0.5), at(0.99), samples.back() };
}

[[noreturn]] void fail(const std::string& why)
{
    std::fprintf(stderr, "kvbench: %s\n", why.c_str());
    std::exit(1);
}

kv::resp::Value call(kv::Client& client, const std::vector<std::string>& request)
{
    auto reply = client.call(request);
    if (reply.is_error())
        fail(request[0] + " failed: " + reply.text);
    return reply;
}

using kv::bench::fixed_key;
using kv::bench::fixed_value;
using kv::bench::is_value_of;

// The registryd under test is trusted as kvctl trusts one: its run dir must
// be ours or root's, and every socket and segment must be its owner's.
uid_t run_dir_owner = 0;

kv::Client connect_to(const std::string& path)
{
    kv::ConnectOptions options;
    options.expected_peer_uid = run_dir_owner;
    return kv::Client::connect(path, options);
}

kv::Client connect_registry(const std::string& run_dir) { return connect_to(kv::registry_socket_path(run_dir)); }

kv::InstanceRecord instance_record(const std::string& run_dir)
{
    auto record = kv::read_instance_record(kv::RunDir::open_trusted(run_dir));
    if (!record)
        fail("no registryd instance record in " + run_dir);
    return *record;
}

std::unique_ptr<kv::NameTableReader> open_names(const std::string& run_dir)
{
    return kv::NameTableReader::open(instance_record(run_dir).names_segment, run_dir_owner);
}

// SETs `count` keys of `make_key(i)` to `make_value(i)` through `bucket`,
// pipelined a thousand at a time; fails unless every one is stored.
template <typename MakeKey, typename MakeValue>
void set_pipelined(kv::Client& bucket, std::uint64_t count, MakeKey make_key, MakeValue make_value)
{
    const std::uint64_t batch = 1000;
    for (std::uint64_t start = 0; start < count; start += batch) {
        std::string requests;
        std::uint64_t end = std::min(count, start + batch);
        for (std::uint64_t i = start; i < end; ++i)
            requests += kv::resp::encode_command({ "SET", make_key(i), make_value(i) });
        bucket.send_raw(requests);
        for (std::uint64_t i = start; i < end; ++i) {
            if (bucket.read_reply().text != "OK")
                fail("SET " + make_key(i) + " refused");
        }
    }
}

// Creates bucket `name` and fills it with `keys` 16-byte keys and values.
kv::BucketRecord fill_bucket(const std::string& run_dir, const std::string& name, std::uint64_t keys)
{
    auto registry = connect_registry(run_dir);
    auto created = call(registry, { "CREATE", name });
    auto decoded = kv::decode_bucket_record(created);
    if (!decoded)
        fail("CREATE " + name + " sent a reply kvbench cannot read");
    auto bucket = connect_to(decoded->socket);
    set_pipelined(bucket, keys, fixed_key, fixed_value);
    return *decoded;
}

// The keys a contended run's writer changes: never among the ones read.
constexpr std::uint64_t writer_keys = 1000;
std::string writer_key(std::uint64_t i) { return "other:" + std::to_string(i); }

// Direct GETs of the keys in a random order, from `threads` threads for
// `seconds`, each value checked against its key. With `contended`, a writer
// on the bucket's socket SETs other keys of the same bucket (pipelined, as
// fast as it is answered) the whole time, so readers retry whenever a write
// overlaps them. With `batch` > 1, each read is a direct MGET of the next
// `batch` keys (SharedTableReader::get_many), and ops count keys.
void direct_get(const std::string& run_dir, std::uint64_t keys, int threads, double seconds, bool contended, std::size_t batch)
{
    std::string name = "bench-direct-" + std::to_string(keys) + (contended ? "-contended" : "") + "-" + std::to_string(batch);
    auto record = fill_bucket(run_dir, name, keys);
    // The keys in a random order, side by side in one array that each
    // reader walks from its own starting point: the harness should not add
    // cache misses of its own. (16-byte std::strings would each live on the
    // heap; and picking a random slot of this array for each read, as this
    // harness did, cost a miss of its own on 16 MB at 1,000,000 keys: 2.2-2.3
    // M/s against 3.6-3.9 M/s with the same reads walking the array.)
    std::vector<std::uint64_t> order(keys);
    std::iota(order.begin(), order.end(), std::uint64_t { 0 });
    std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
    std::vector<char> flat(keys * 16);
    for (std::uint64_t i = 0; i < keys; ++i)
        std::memcpy(flat.data() + i * 16, fixed_key(order[i]).data(), 16);
    std::atomic<bool> stop { false };
    std::vector<std::uint64_t> counts(threads);
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            auto reader = kv::SharedTableReader::open(record.segment, kv::TableKind::bucket, run_dir_owner);
            if (!reader)
                fail("unable to map " + record.segment);
            std::uint64_t next = keys / static_cast<std::uint64_t>(threads) * static_cast<std::uint64_t>(t);
            auto next_key = [&] {
                const std::string_view key(flat.data() + next * 16, 16);
                next = next + 1 == keys ? 0 : next + 1;
                return key;
            };
            std::string value;
            std::vector<std::string_view> batch_keys(batch);
            std::vector<std::string> batch_values(batch);
            std::vector<kv::SharedTableReader::Result> batch_results(batch);
            std::uint64_t done = 0;
            while (!stop.load(std::memory_order_relaxed)) {
                if (batch == 1) {
                    for (int i = 0; i < 1024; ++i) {
                        const std::string_view key = next_key();
                        if (reader->get(key, value) != kv::SharedTableReader::Result::found)
                            fail("direct GET missed key " + std::string(key));
                        if (!is_value_of(key, value))
                            fail("direct GET of " + std::string(key) + " returned " + value + ", not its value");
                    }
                    done += 1024;
                    continue;
                }
                for (int n = 0; n < 64; ++n) {
                    for (auto& key : batch_keys)
                        key = next_key();
                    if (reader->get_many(batch_keys, batch_values, batch_results) != kv::SharedTableReader::Result::found)
                        fail("direct MGET failed");
                    for (std::size_t i = 0; i < batch; ++i)
                        if (batch_results[i] != kv::SharedTableReader::Result::found || !is_value_of(batch_keys[i], batch_values[i]))
                            fail("direct MGET of " + std::string(batch_keys[i]) + " did not return its value");
                }
                done += 64 * batch;
            }
            counts[t] = done;
        });
    }
    std::atomic<std::uint64_t> writes { 0 };
    std::thread writer;
    if (contended) {
        writer = std::thread([&] {
            auto bucket = connect_to(record.socket);
            for (std::uint64_t round = 0; !stop.load(std::memory_order_relaxed); ++round) {
                set_pipelined(bucket, writer_keys, writer_key, [round](std::uint64_t) { return "round:" + std::to_string(round); });
                writes += writer_keys;
            }
        });
    }
    auto start = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); // the measuring window, not synchronisation
    stop = true;
    for (auto& worker : workers)
        worker.join();
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (writer.joinable())
        writer.join();
    std::uint64_t total = 0;
    for (auto c : counts)
        total += c;
    std::printf("{\"bench\":\"direct-get\",\"keys\":%llu,\"threads\":%d,\"contended\":%s,\"batch\":%zu,\"ops_per_s\":%.0f,"
                "\"writes_per_s\":%.0f}\n",
        static_cast<unsigned long long>(keys), threads, contended ? "true" : "false", batch, total / elapsed, writes / elapsed);
    auto registry = connect_registry(run_dir);
    call(registry, { "STOP", name });
}

void lookup(const std::string& run_dir, int buckets, double seconds)
{
    auto registry = connect_registry(run_dir);
    std::vector<std::string> names;
    for (int i = 0; i < buckets; ++i) {
        names.push_back("bench-lookup-" + std::to_string(i));
        call(registry, { "CREATE", names.back() });
    }
    auto table = open_names(run_dir);
    if (!table)
        fail("no name table for " + run_dir);
    std::mt19937 random(1);
    kv::BucketRecord record;
    std::uint64_t done = 0;
    auto start = Clock::now();
    auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    while (Clock::now() < deadline) {
        for (int i = 0; i < 4096; ++i) {
            if (table->lookup(names[random() % names.size()], record) != kv::NameTableReader::Result::found)
                fail("name table missed a bucket");
        }
        done += 4096;
    }
    double table_rate = done / std::chrono::duration<double>(Clock::now() - start).count();
    // The same through the socket: one request, one reply, as a plain client does.
    done = 0;
    std::vector<double> latencies;
    start = Clock::now();
    deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    while (Clock::now() < deadline) {
        auto before = Clock::now();
        call(registry, { "LOOKUP", names[random() % names.size()] });
        latencies.push_back(microseconds(Clock::now() - before));
        ++done;
    }
    double socket_rate = done / std::chrono::duration<double>(Clock::now() - start).count();
    auto p = percentiles(latencies);
    std::printf("{\"bench\":\"lookup\",\"buckets\":%d,\"table_ops_per_s\":%.0f,\"socket_ops_per_s\":%.0f,"
                "\"socket_median_us\":%.1f,\"socket_p99_us\":%.1f}\n",
        buckets, table_rate, socket_rate, p.median, p.p99);
    for (const auto& name : names)
        call(registry, { "STOP", name });
}

// CREATE's latency, spawn to ready. With `stop_each`, each bucket is STOPped
// (untimed) before the next CREATE, so the number of live buckets stays what
// it was: the storm figures compare CREATE at 0 and at 10,000 live buckets.
void create(const std::string& run_dir, int count, bool stop_each)
{
    auto registry = connect_registry(run_dir);
    std::vector<double> latencies;
    for (int i = 0; i < count; ++i) {
        std::string name = "bench-create-" + std::to_string(i);
        auto before = Clock::now();
        call(registry, { "CREATE", name });
        latencies.push_back(microseconds(Clock::now() - before));
        if (stop_each)
            call(registry, { "STOP", name });
    }
    if (!stop_each) {
        for (int i = 0; i < count; ++i)
            call(registry, { "STOP", "bench-create-" + std::to_string(i) });
    }
    auto p = percentiles(latencies);
    std::printf("{\"bench\":\"create\",\"count\":%d,\"median_us\":%.1f,\"p99_us\":%.1f}\n", count, p.median, p.p99);
}

// The floor under CREATE: posix_spawn of a small static program (`program`,
// kvbench-ready) until it writes its readiness line on a pipe, `count`
// times, each then reaped. CREATE's spawn-to-ready is this plus registryd's
// and bucketd's own work.
void spawn_floor(const std::string& program, int count)
{
    std::vector<double> latencies;
    char* const argv[] = { const_cast<char*>(program.c_str()), nullptr };
    char* const envp[] = { nullptr };
    for (int i = 0; i < count; ++i) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) == -1)
            fail(std::string("pipe2: ") + std::strerror(errno));
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, fds[1], 3); // dup2 clears close-on-exec on 3
        auto before = Clock::now();
        pid_t pid = -1;
        if (int error = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv, envp); error != 0)
            fail("posix_spawn " + program + ": " + std::strerror(error));
        ::close(fds[1]);
        char line = 0;
        if (::read(fds[0], &line, 1) != 1 || line != '\n')
            fail(program + " wrote no readiness line");
        latencies.push_back(microseconds(Clock::now() - before));
        ::close(fds[0]);
        posix_spawn_file_actions_destroy(&actions);
        int status = 0;
        ::waitpid(pid, &status, 0);
    }
    auto p = percentiles(latencies);
    std::printf("{\"bench\":\"spawn-floor\",\"count\":%d,\"median_us\":%.1f,\"p99_us\":%.1f}\n", count, p.median, p.p99);
}

// Creates `count` buckets from `clients` connections at once and leaves them
// running: the live buckets of the storm figures.
void fill(const std::string& run_dir, int count, int clients)
{
    auto start = Clock::now();
    std::vector<std::thread> workers;
    for (int c = 0; c < clients; ++c) {
        workers.emplace_back([&, c] {
            auto connection = connect_registry(run_dir);
            for (int j = c; j < count; j += clients) {
                auto reply = connection.call({ "CREATE", "bench-live-" + std::to_string(j) });
                if (reply.is_error())
                    fail("CREATE bench-live-" + std::to_string(j) + " failed: " + reply.text);
            }
        });
    }
    for (auto& worker : workers)
        worker.join();
    std::printf("{\"bench\":\"fill\",\"count\":%d,\"create_s\":%.2f}\n", count,
        std::chrono::duration<double>(Clock::now() - start).count());
}

// PING on the Unix socket at `path`, as any client would reach a bucket:
// the pid of the process that listens there (SO_PEERCRED names whoever
// called listen()), or -1 if no process accepts a connection there yet or it
// hung up before answering.
// A blocking connection to the Unix socket at `path`, as a plain client
// makes one (no peer check: the timing is the point); invalid if nobody
// accepts there.
kv::UniqueFd connect_unix(const std::string& path)
{
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path)
        fail("socket path too long: " + path);
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    kv::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == -1)
        return kv::UniqueFd();
    return fd;
}

pid_t ping(const std::string& path)
{
    auto fd = connect_unix(path);
    if (!fd)
        return -1;
    static constexpr std::string_view request = "*1\r\n$4\r\nPING\r\n";
    static constexpr std::string_view pong = "+PONG\r\n";
    if (::write(fd.get(), request.data(), request.size()) != static_cast<ssize_t>(request.size()))
        return -1;
    std::string reply;
    char buffer[64];
    while (reply.size() < pong.size()) {
        ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
        if (got <= 0)
            return -1;
        reply.append(buffer, static_cast<std::size_t>(got));
    }
    if (reply != pong)
        fail("PING on " + path + " answered " + reply);
    ucred peer {};
    socklen_t size = sizeof peer;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &size) == -1)
        fail("unable to read the peer of " + path);
    return peer.pid;
}

// One restart, timed: SIGKILL `pid` (through a pidfd), wait until its exit is
// visible, then look every 100 us until `ready(pid)` gives the pid of a new
// process that a client has reached. Returns that pid. The same look for
// every supervisor; it sleeps between looks rather than yield as the kill
// benchmark does, so that it does not hold one of this machine's two cores
// against the supervisor and the process starting (a figure may come up to
// about 0.15 ms late: the interval and the timer's slack).
template <typename Ready>
pid_t kill_and_wait_for_next(pid_t pid, Ready ready, std::vector<double>& totals, std::vector<double>& exits)
{
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd == -1)
        fail("unable to open a pidfd for pid " + std::to_string(pid) + ": " + std::strerror(errno));
    auto before = Clock::now();
    if (::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0) == -1)
        fail("unable to kill pid " + std::to_string(pid) + ": " + std::strerror(errno));
    pollfd entry { pidfd, POLLIN, 0 };
    ::poll(&entry, 1, -1);
    exits.push_back(microseconds(Clock::now() - before));
    ::close(pidfd);
    auto deadline = before + std::chrono::seconds(10);
    for (;;) {
        pid_t next = ready(pid);
        if (next > 0) {
            totals.push_back(microseconds(Clock::now() - before));
            return next;
        }
        if (Clock::now() > deadline)
            fail("no new process ready 10 s after SIGKILL of pid " + std::to_string(pid));
        std::this_thread::sleep_for(std::chrono::microseconds(100)); // polling interval, see above
    }
}

void print_restarts(const char* bench, int count, const std::vector<double>& totals, const std::vector<double>& exits)
{
    auto p = percentiles(totals);
    auto e = percentiles(exits);
    std::printf("{\"bench\":\"%s\",\"count\":%d,\"median_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,"
                "\"exit_seen_median_us\":%.1f}\n",
        bench, count, p.median, p.p99, p.max, e.median);
}

// kv: a permanent bucket, SIGKILLed `count` times; ready when the name table
// (what kvctl reads) holds the name under a new pid and that bucket's socket
// answers PING. registryd must allow the restarts (--max-restarts).
void restart(const std::string& run_dir, int count)
{
    const std::string name = "bench-restart";
    auto registry = connect_registry(run_dir);
    auto created = call(registry, { "CREATE", name, "RESTART", "permanent" });
    auto decoded = kv::decode_bucket_record(created);
    if (!decoded)
        fail("CREATE " + name + " sent a reply kvbench cannot read");
    auto table = open_names(run_dir);
    if (!table)
        fail("no name table for " + run_dir);
    pid_t pid = decoded->pid;
    std::vector<double> totals, exits;
    kv::BucketRecord record;
    for (int i = 0; i < count; ++i) {
        pid = kill_and_wait_for_next(pid, [&](pid_t old) -> pid_t {
            if (table->lookup(name, record) != kv::NameTableReader::Result::found || record.pid == old)
                return -1;
            return ping(record.socket) > 0 ? record.pid : -1;
        }, totals, exits);
    }
    call(registry, { "STOP", name });
    print_restarts("restart", count, totals, exits);
}

// Another supervisor's bucketd (bench/bench_bucket.cpp) at `socket`: ready
// when a PING there is answered by a process other than the one killed.
// `min_uptime_ms`: wait that long before each kill (untimed), for a
// supervisor that spaces its restarts (s6-supervise starts ./run again no
// sooner than a second after it last started it).
void reference_restart(const std::string& socket, int count, int min_uptime_ms)
{
    pid_t pid = -1;
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while ((pid = ping(socket)) <= 0) {
        if (Clock::now() > deadline)
            fail("nothing answers PING on " + socket);
        std::this_thread::sleep_for(std::chrono::milliseconds(10)); // start-up, untimed
    }
    std::vector<double> totals, exits;
    for (int i = 0; i < count; ++i) {
        if (min_uptime_ms > 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(min_uptime_ms)); // not measured
        pid = kill_and_wait_for_next(pid, [&](pid_t old) -> pid_t {
            pid_t next = ping(socket);
            return next != old ? next : -1;
        }, totals, exits);
    }
    print_restarts("reference-restart", count, totals, exits);
}

// The floor: in one bare process, fork a child that waits, SIGKILL it, wait
// for its pidfd to turn readable, reap it. No registry, no socket.
Percentiles bare_pidfd_floor(int count)
{
    std::vector<double> latencies;
    for (int i = 0; i < count; ++i) {
        pid_t pid = ::fork();
        if (pid == 0) {
            for (;;)
                ::pause();
        }
        int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
        auto before = Clock::now();
        ::kill(pid, SIGKILL);
        pollfd entry { pidfd, POLLIN, 0 };
        ::poll(&entry, 1, -1);
        siginfo_t info {};
        ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED);
        latencies.push_back(microseconds(Clock::now() - before));
        ::close(pidfd);
    }
    return percentiles(latencies);
}

// The floor with a monitor: a bare forked child killed as a bucket is, after
// it has said it is ready (one byte on a pipe, then pause), and noticed as
// registryd notices a bucket's exit, by another thread asleep in epoll_wait on
// the child's pidfd, which reaps it with waitid and then publishes that it is
// gone; the time runs from the kill until this thread sees that, as
// kill-to-gone runs until the name table changes. The bare floor's child is
// killed before it has run at all, and nothing sleeps on its exit; what a
// child that has run costs to wake and end, and what waking a sleeping monitor
// adds, are in here. What registryd itself adds, and what the bucket's exit
// costs beyond a bare child's, are what kill-to-gone has on top of this.
Percentiles monitored_pidfd_floor(int count)
{
    kv::UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll)
        fail(std::string("unable to create an epoll set: ") + std::strerror(errno));
    std::atomic<int> reaped { 0 }; // children the monitor has reaped so far
    std::thread monitor([&] {
        for (int seen = 0; seen < count; ++seen) {
            epoll_event event {};
            while (::epoll_wait(epoll.get(), &event, 1, -1) != 1) { }
            int pidfd = event.data.fd;
            ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, pidfd, nullptr);
            siginfo_t info {};
            ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED);
            ::close(pidfd);
            reaped.store(seen + 1, std::memory_order_release);
        }
    });
    std::vector<double> latencies;
    for (int i = 0; i < count; ++i) {
        int ready[2];
        if (::pipe2(ready, O_CLOEXEC) == -1)
            fail(std::string("unable to make a pipe: ") + std::strerror(errno));
        pid_t pid = ::fork();
        if (pid == 0) {
            ::close(ready[0]);
            (void)!::write(ready[1], "\n", 1);
            for (;;)
                ::pause();
        }
        ::close(ready[1]);
        char line;
        if (::read(ready[0], &line, 1) != 1)
            fail("a forked child did not say it was ready");
        ::close(ready[0]);
        int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
        epoll_event event { EPOLLIN, {} };
        event.data.fd = pidfd;
        if (pidfd == -1 || ::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, pidfd, &event) == -1)
            fail(std::string("unable to watch a forked child's pidfd: ") + std::strerror(errno));
        auto before = Clock::now();
        ::kill(pid, SIGKILL);
        while (reaped.load(std::memory_order_acquire) <= i)
            std::this_thread::yield(); // as wait_until_gone looks at the name table
        latencies.push_back(microseconds(Clock::now() - before));
    }
    monitor.join();
    return percentiles(latencies);
}

// pid's process id field of a CREATE or LOOKUP reply (an integer here, a
// bulk string in a cluster's flat array).
pid_t pid_field(const kv::resp::Value& reply)
{
    const auto* pid = reply.field("pid");
    if (!pid)
        fail("a reply without a pid field");
    long long value = pid->integer;
    if (value == 0 && !pid->text.empty())
        value = std::stoll(pid->text);
    if (value < 2)
        fail("a reply with pid " + std::to_string(value));
    return static_cast<pid_t>(value);
}

// SIGKILLs `pid` and waits until its exit is visible at all (our own pidfd on
// it turns readable: the kernel's share of every kill figure). Returns when
// the signal was sent; `exits` gets the time from then to the exit.
Clock::time_point kill_and_see_exit(pid_t pid, std::vector<double>& exits)
{
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd == -1)
        fail("unable to open a pidfd for pid " + std::to_string(pid) + ": " + std::strerror(errno));
    auto before = Clock::now();
    ::kill(pid, SIGKILL);
    pollfd entry { pidfd, POLLIN, 0 };
    ::poll(&entry, 1, -1);
    exits.push_back(microseconds(Clock::now() - before));
    ::close(pidfd);
    return before;
}

// Until `table` no longer holds `name` under `pid`. Yielding between looks
// leaves the CPU to registryd and to the dying process when they share a
// core with us (this machine has two).
void wait_until_gone(kv::NameTableReader& table, const std::string& name, pid_t pid)
{
    kv::BucketRecord record;
    while (table.lookup(name, record) == kv::NameTableReader::Result::found && record.pid == pid)
        std::this_thread::yield();
}

// One kill-to-gone: CREATE `name`, SIGKILL its bucket, until a LOOKUP (here
// through the name table, which changes in the same place as the registry's
// own index) no longer finds it. Microseconds from the kill.
double kill_to_gone_once(kv::Client& registry, kv::NameTableReader& table, const std::string& name, std::vector<double>& exits)
{
    pid_t pid = pid_field(call(registry, { "CREATE", name }));
    auto before = kill_and_see_exit(pid, exits);
    wait_until_gone(table, name, pid);
    return microseconds(Clock::now() - before);
}

void kill_to_gone(const std::string& run_dir, int count)
{
    auto registry = connect_registry(run_dir);
    auto table = open_names(run_dir);
    if (!table)
        fail("no name table for " + run_dir);
    std::vector<double> latencies, exits;
    for (int i = 0; i < count; ++i)
        latencies.push_back(kill_to_gone_once(registry, *table, "bench-kill-" + std::to_string(i % 8), exits));
    auto p = percentiles(latencies);
    auto exit_seen = percentiles(exits);
    auto floor = bare_pidfd_floor(count);
    auto monitored = monitored_pidfd_floor(count);
    std::printf("{\"bench\":\"kill\",\"count\":%d,\"median_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,"
                "\"exit_seen_median_us\":%.1f,\"floor_median_us\":%.1f,\"floor_p99_us\":%.1f,"
                "\"monitored_floor_median_us\":%.1f,\"monitored_floor_p99_us\":%.1f}\n",
        count, p.median, p.p99, p.max, exit_seen.median, floor.median, floor.p99, monitored.median, monitored.p99);
}

std::uint64_t status_kib(pid_t pid, const char* file, const char* field)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(field, 0) == 0)
            return std::stoull(line.substr(std::string(field).size()));
    }
    return 0;
}

void scale(const std::string& run_dir, int count, int clients)
{
    auto registry = connect_registry(run_dir);
    auto record = instance_record(run_dir);
    auto registry_pid = record.pid;
    auto rss_before = status_kib(registry_pid, "status", "VmRSS:");
    auto names_reader = kv::SharedTableReader::open(record.names_segment, kv::TableKind::names, run_dir_owner);
    if (!names_reader)
        fail("no name table for " + run_dir);
    std::uint64_t baseline = 0; // buckets that were there before (other benchmarks')
    names_reader->size(baseline);
    // Several clients at once, as a real load would come: registryd spawns
    // one bucket at a time, and the ones already spawned start up meanwhile.
    std::vector<std::vector<pid_t>> created(clients);
    auto start = Clock::now();
    std::vector<std::thread> workers;
    for (int c = 0; c < clients; ++c) {
        workers.emplace_back([&, c] {
            auto connection = connect_registry(run_dir);
            for (int j = c; j < count; j += clients) {
                auto reply = connection.call({ "CREATE", "bench-scale-" + std::to_string(j) });
                if (reply.is_error())
                    fail("CREATE " + std::to_string(j) + " failed: " + reply.text);
                created[c].push_back(static_cast<pid_t>(reply.field("pid")->integer));
            }
        });
    }
    for (auto& worker : workers)
        worker.join();
    std::vector<pid_t> pids;
    for (const auto& some : created)
        pids.insert(pids.end(), some.begin(), some.end());
    double create_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    auto rss = status_kib(registry_pid, "status", "VmRSS:");
    // PSS of a sample of buckets (reading smaps_rollup of all 10,000 takes a while).
    std::vector<double> pss;
    for (std::size_t i = 0; i < pids.size(); i += std::max<std::size_t>(1, pids.size() / 200))
        pss.push_back(static_cast<double>(status_kib(pids[i], "smaps_rollup", "Pss:")));
    auto pss_p = percentiles(pss);
    double pss_max = *std::max_element(pss.begin(), pss.end());

    auto kill_start = Clock::now();
    for (pid_t pid : pids) {
        if (pid > 1)
            ::kill(pid, SIGKILL);
    }
    std::uint64_t left = 1;
    while (names_reader->size(left) == kv::SharedTableReader::Result::found && left > baseline)
        std::this_thread::yield();
    double empty_seconds = std::chrono::duration<double>(Clock::now() - kill_start).count();
    // The name table is back to its count from before; LIST (the registry's
    // own index) must hold none of these buckets either.
    auto list = call(registry, { "LIST" });
    for (const auto& entry : list.elements) {
        auto listed = kv::decode_bucket_record(entry);
        if (!listed)
            fail("LIST sent an entry kvbench cannot read");
        if (listed->name.rfind("bench-scale-", 0) == 0)
            fail("LIST still holds " + listed->name + " after every bucket was killed and the name table emptied");
    }
    if (list.elements.size() != baseline)
        fail("LIST holds " + std::to_string(list.elements.size()) + " buckets after the kill, not the "
            + std::to_string(baseline) + " from before");
    std::printf("{\"bench\":\"scale\",\"count\":%d,\"clients\":%d,\"create_s\":%.2f,\"registry_rss_kib\":%llu,"
                "\"registry_rss_before_kib\":%llu,\"bucket_pss_median_kib\":%.0f,\"bucket_pss_max_kib\":%.0f,"
                "\"kill_all_to_empty_s\":%.3f,\"list_after\":%zu,\"list_before\":%llu}\n",
        count, clients, create_seconds, static_cast<unsigned long long>(rss), static_cast<unsigned long long>(rss_before),
        pss_p.median, pss_max, empty_seconds, list.elements.size(), static_cast<unsigned long long>(baseline));
}

// ---- The text server (textd) beside the bucket's RESP socket ----

// "127.0.0.1:PORT" or "[::1]:PORT", as INFO registry gives text_listen.
struct TcpAddress {
    sockaddr_storage address {};
    socklen_t length = 0;
};

TcpAddress resolve_tcp(const std::string& text)
{
    auto colon = text.rfind(':');
    if (colon == std::string::npos)
        fail("text_listen " + text + " has no port");
    std::string host = text.substr(0, colon), port = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    addrinfo hints {};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    if (int error = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); error != 0)
        fail("unable to read the text server's address " + text + ": " + ::gai_strerror(error));
    TcpAddress result;
    std::memcpy(&result.address, found->ai_addr, found->ai_addrlen);
    result.length = found->ai_addrlen;
    ::freeaddrinfo(found);
    return result;
}

// One field of INFO registry ("text_listen", "text_server_pid").
std::string registry_info(const std::string& run_dir, const std::string& field)
{
    auto registry = connect_registry(run_dir);
    auto info = call(registry, { "INFO", "registry" }).text;
    auto at = info.find("\n" + field + ":");
    if (at == std::string::npos)
        fail("INFO registry has no " + field);
    at += field.size() + 2;
    return info.substr(at, info.find_first_of("\r\n", at) - at);
}

// A blocking TCP connection, with Nagle off as the guide's clients would
// want for one-line requests (textd does the same on its side).
kv::UniqueFd connect_tcp(const TcpAddress& to)
{
    kv::UniqueFd fd(::socket(to.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to.address), to.length) == -1)
        return kv::UniqueFd();
    const int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

// One request, one reply, as a blocking client does it: sends `request`,
// reads until `expected` has come in full, and fails on any other byte (so
// every reply of every benchmark below is checked, and a wrong one stops the
// run rather than hang it: a reply slower than 10 s fails too).
// Protocol bytes on one line of an error message: CR and LF as spaces.
std::string one_line(std::string_view bytes)
{
    std::string text(bytes);
    std::replace_if(text.begin(), text.end(), [](char c) { return c == '\r' || c == '\n'; }, ' ');
    return text;
}

void exchange(int fd, std::string_view request, std::string_view expected, std::string& buffer)
{
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
        fail("unable to send " + one_line(request) + ": " + std::strerror(errno));
    buffer.clear();
    char chunk[256];
    while (buffer.size() < expected.size()) {
        ssize_t got = ::recv(fd, chunk, sizeof chunk, 0);
        if (got <= 0)
            fail("no reply to " + one_line(request) + (got == 0 ? ": connection closed" : ": " + std::string(std::strerror(errno))));
        buffer.append(chunk, static_cast<std::size_t>(got));
        auto compared = std::min(buffer.size(), expected.size());
        if (std::string_view(buffer).substr(0, compared) != expected.substr(0, compared))
            break; // wrong already: say so now rather than wait for bytes that will not come
    }
    if (buffer != expected)
        fail(one_line(request) + "answered " + one_line(buffer) + "not " + one_line(expected));
}

void set_reply_timeout(int fd)
{
    timeval ten_seconds { 10, 0 };
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &ten_seconds, sizeof ten_seconds);
}

// The requests of one benchmark, one per preloaded key, each with the exact
// reply it must get.
struct Workload {
    std::vector<std::string> requests;
    std::vector<std::string> replies;
};

struct LoadResult {
    double ops_per_s;
    Percentiles latency; // per request, microseconds
};

// `clients` threads, each on a connection of its own (opened first, not
// timed), each sending a request for a random key and waiting for its reply
// before the next (one request outstanding per client, as the guide's
// clients do), for `seconds`.
template <typename Open>
LoadResult request_reply_load(Open open, const Workload& work, int clients, double seconds)
{
    std::vector<kv::UniqueFd> connections;
    for (int c = 0; c < clients; ++c) {
        connections.push_back(open());
        set_reply_timeout(connections.back().get());
    }
    std::atomic<bool> stop { false };
    std::latch started(clients + 1);
    std::vector<std::vector<double>> latencies(clients);
    std::vector<std::thread> workers;
    for (int c = 0; c < clients; ++c) {
        workers.emplace_back([&, c] {
            std::mt19937_64 random(c + 1);
            std::string buffer;
            auto& mine = latencies[c];
            mine.reserve(1 << 16); // no reallocation in the first tens of thousands of requests
            started.arrive_and_wait();
            while (!stop.load(std::memory_order_relaxed)) {
                auto i = random() % work.requests.size();
                auto before = Clock::now();
                exchange(connections[c].get(), work.requests[i], work.replies[i], buffer);
                mine.push_back(microseconds(Clock::now() - before));
            }
        });
    }
    started.arrive_and_wait();
    auto start = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); // the measuring window, not synchronisation
    stop = true;
    for (auto& worker : workers)
        worker.join();
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    std::vector<double> all;
    for (auto& some : latencies)
        all.insert(all.end(), some.begin(), some.end());
    return { all.size() / elapsed, percentiles(std::move(all)) };
}

// `count` times, one after the other: connect, one request, its reply,
// close; the whole timed. What a client that connects for one request pays.
template <typename Open>
Percentiles connect_and_first_reply(Open open, std::string_view request, std::string_view reply, int count)
{
    std::vector<double> latencies;
    std::string buffer;
    for (int i = 0; i < count; ++i) {
        auto before = Clock::now();
        auto connection = open();
        exchange(connection.get(), request, reply, buffer);
        connection.reset();
        latencies.push_back(microseconds(Clock::now() - before));
    }
    return percentiles(std::move(latencies));
}

// The live (not yet reaped, not zombie) children of `parent`.
std::vector<pid_t> live_children(pid_t parent)
{
    std::ifstream in("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) + "/children");
    std::vector<pid_t> pids;
    for (pid_t pid; in >> pid;) {
        std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
        std::string line;
        std::getline(stat, line);
        auto state = line.rfind(')'); // the state follows "(comm)", which may hold spaces
        if (state != std::string::npos && state + 2 < line.size() && line[state + 2] != 'Z')
            pids.push_back(pid);
    }
    return pids;
}

// Until `parent` has exactly `count` live children: textd gives each
// connection a process of its own (forked, or one whose client left and that
// waits for the next; at most 16 wait, the rest exit), in their own time. Looks every millisecond (/proc has no event to wait on), 10 s at most.
std::vector<pid_t> wait_for_children(pid_t parent, std::size_t count)
{
    auto deadline = Clock::now() + std::chrono::seconds(10);
    for (;;) {
        auto pids = live_children(parent);
        if (pids.size() == count)
            return pids;
        if (Clock::now() > deadline)
            fail("textd (pid " + std::to_string(parent) + ") has " + std::to_string(pids.size()) + " live children, not " + std::to_string(count));
        std::this_thread::sleep_for(std::chrono::milliseconds(1)); // polling interval, see above
    }
}

// `"name_ops_per_s":..,"name_p50_us":..,"name_p99_us":..` for the JSON line.
std::string json_load(const char* name, const LoadResult& result)
{
    char text[160];
    std::snprintf(text, sizeof text, ",\"%s_ops_per_s\":%.0f,\"%s_p50_us\":%.1f,\"%s_p99_us\":%.1f", name, result.ops_per_s, name,
        result.latency.median, name, result.latency.p99);
    return text;
}

std::string json_latency(const char* name, const Percentiles& p)
{
    char text[120];
    std::snprintf(text, sizeof text, ",\"%s_p50_us\":%.1f,\"%s_p99_us\":%.1f", name, p.median, name, p.p99);
    return text;
}

struct TextOptions {
    std::uint64_t keys;
    int clients;
    double seconds;
    int connects;
    int idle;
};

// The text server (textd, reached at INFO's text_listen) beside the same
// bucket's RESP socket, measured in the same run by the same client code:
// GET and PUT (SET) throughput and latency from `clients` blocking clients;
// connect + one GET + close, `connects` times; and memory per idle
// connection, `idle` of them, each after one GET.
void text(const std::string& run_dir, const TextOptions& options)
{
    auto address_text = registry_info(run_dir, "text_listen");
    if (address_text.empty())
        fail("registryd serves no text protocol (start it with --text-listen)");
    auto address = resolve_tcp(address_text);
    const std::string name = "bench-text";
    auto record = fill_bucket(run_dir, name, options.keys);

    Workload text_get, text_put, resp_get, resp_set;
    for (std::uint64_t i = 0; i < options.keys; ++i) {
        auto key = fixed_key(i), value = fixed_value(i);
        text_get.requests.push_back("GET " + name + " " + key + "\r\n");
        text_get.replies.push_back(value + "\r\nOK\r\n");
        // PUT and SET write the value the key already has, so every GET
        // stays checkable whichever runs first.
        text_put.requests.push_back("PUT " + name + " " + key + " " + value + "\r\n");
        text_put.replies.push_back("OK\r\n");
        resp_get.requests.push_back(kv::resp::encode_command({ "GET", key }));
        resp_get.replies.push_back("$" + std::to_string(value.size()) + "\r\n" + value + "\r\n");
        resp_set.requests.push_back(kv::resp::encode_command({ "SET", key, value }));
        resp_set.replies.push_back("+OK\r\n");
    }
    auto open_text = [&] {
        auto fd = connect_tcp(address);
        if (!fd)
            fail("unable to connect to the text server at " + address_text + ": " + std::strerror(errno));
        return fd;
    };
    auto open_resp = [&] {
        auto fd = connect_unix(record.socket);
        if (!fd)
            fail("unable to connect to " + record.socket + ": " + std::strerror(errno));
        return fd;
    };

    std::string line = "{\"bench\":\"text\",\"keys\":" + std::to_string(options.keys) + ",\"clients\":" + std::to_string(options.clients);
    line += json_load("text_get", request_reply_load(open_text, text_get, options.clients, options.seconds));
    line += json_load("resp_get", request_reply_load(open_resp, resp_get, options.clients, options.seconds));
    line += json_load("text_put", request_reply_load(open_text, text_put, options.clients, options.seconds));
    line += json_load("resp_set", request_reply_load(open_resp, resp_set, options.clients, options.seconds));

    line += ",\"connects\":" + std::to_string(options.connects);
    line += json_latency("text_connect", connect_and_first_reply(open_text, text_get.requests[0], text_get.replies[0], options.connects));
    line += json_latency("resp_connect", connect_and_first_reply(open_resp, resp_get.requests[0], resp_get.replies[0], options.connects));

    // Memory: textd and its handlers (Pss: each shared page divided among
    // the processes that map it, so the sum over processes counts it once)
    // with no client, then with `idle` clients; and the bucket's RSS before
    // and after as many RESP clients. Socket buffers are kernel memory,
    // in neither figure.
    auto textd = static_cast<pid_t>(std::stol(registry_info(run_dir, "text_server_pid")));
    // Up to 16 processes may wait for clients already: once `idle` (more)
    // clients are connected, textd has exactly one process for each.
    double textd_alone = static_cast<double>(status_kib(textd, "smaps_rollup", "Pss:"));
    std::vector<kv::UniqueFd> held;
    std::string buffer;
    for (int i = 0; i < options.idle; ++i) {
        held.push_back(open_text());
        set_reply_timeout(held.back().get());
        exchange(held.back().get(), text_get.requests[i % options.keys], text_get.replies[i % options.keys], buffer);
    }
    auto handlers = wait_for_children(textd, static_cast<std::size_t>(options.idle));
    double handlers_pss = 0, handlers_private = 0;
    for (pid_t pid : handlers) {
        handlers_pss += static_cast<double>(status_kib(pid, "smaps_rollup", "Pss:"));
        handlers_private += static_cast<double>(status_kib(pid, "smaps_rollup", "Private_Clean:") + status_kib(pid, "smaps_rollup", "Private_Dirty:"));
    }
    double textd_with = static_cast<double>(status_kib(textd, "smaps_rollup", "Pss:"));
    held.clear();
    auto bucket_before = status_kib(record.pid, "status", "VmRSS:");
    for (int i = 0; i < options.idle; ++i) {
        held.push_back(open_resp());
        set_reply_timeout(held.back().get());
        exchange(held.back().get(), resp_get.requests[i % options.keys], resp_get.replies[i % options.keys], buffer);
    }
    auto bucket_after = status_kib(record.pid, "status", "VmRSS:");
    held.clear();

    char memory[400];
    std::snprintf(memory, sizeof memory,
        ",\"idle\":%d,\"text_handler_pss_kib\":%.1f,\"text_handler_private_kib\":%.1f,\"text_total_pss_growth_kib\":%.1f,"
        "\"textd_pss_alone_kib\":%.0f,\"resp_bucket_rss_growth_kib\":%.2f}",
        options.idle, handlers_pss / options.idle, handlers_private / options.idle,
        (handlers_pss + textd_with - textd_alone) / options.idle, textd_alone,
        (static_cast<double>(bucket_after) - static_cast<double>(bucket_before)) / options.idle);
    line += memory;
    std::printf("%s\n", line.c_str());
    auto registry = connect_registry(run_dir);
    call(registry, { "STOP", name });
}

// ---- Cluster mode (registryd --cluster), each figure beside its reference ----

// Microseconds of each `LOOKUP name` on `registry`, one request and one reply
// at a time as a plain client makes them, the reply checked to be a bucket.
double timed_lookup(kv::Client& registry, const std::string& name)
{
    auto before = Clock::now();
    auto reply = call(registry, { "LOOKUP", name });
    double took = microseconds(Clock::now() - before);
    if (reply.is_error() || !reply.field("pid"))
        fail("LOOKUP " + name + " sent no bucket");
    return took;
}

bool is_not_found(const kv::resp::Value& reply) { return reply.is_error() && reply.text.rfind("NOTFOUND", 0) == 0; }

// Until LOOKUP `name` on `registry` answers with pid `pid` (another node's
// bucket reaches this node's copy through its etcd watch). Looks every
// millisecond, 10 s at most: set-up, not timed.
// LOOKUP `name` on `registry` until it answers NOTFOUND (`poll` apart, none
// for as fast as it answers); fails past `limit` after `since`, saying `why`.
void wait_until_not_found(kv::Client& registry, const std::string& name, Clock::time_point since, std::chrono::seconds limit,
    std::chrono::milliseconds poll, const std::string& why)
{
    for (;;) {
        auto reply = registry.call({ "LOOKUP", name });
        if (is_not_found(reply))
            return;
        if (reply.is_error())
            fail("LOOKUP " + name + " failed: " + reply.text);
        if (Clock::now() - since > limit)
            fail("LOOKUP " + name + " " + why);
        if (poll.count() > 0)
            std::this_thread::sleep_for(poll);
    }
}

void wait_until_seen(kv::Client& registry, const std::string& name, pid_t pid)
{
    auto deadline = Clock::now() + std::chrono::seconds(10);
    for (;;) {
        auto reply = registry.call({ "LOOKUP", name });
        if (!reply.is_error() && pid_field(reply) == pid)
            return;
        if (reply.is_error() && !is_not_found(reply))
            fail("LOOKUP " + name + " failed: " + reply.text);
        if (Clock::now() > deadline)
            fail("LOOKUP " + name + " did not find pid " + std::to_string(pid) + " within 10 s");
        std::this_thread::sleep_for(std::chrono::milliseconds(1)); // polling interval, see above
    }
}

// "http://127.0.0.1:PORT" (what registryd's --cluster takes): host and port.
std::pair<std::string, std::string> etcd_host_port(const std::string& url)
{
    std::string rest = url.rfind("http://", 0) == 0 ? url.substr(7) : url;
    auto colon = rest.rfind(':');
    if (colon == std::string::npos)
        fail("etcd endpoint " + url + " has no port");
    return { rest.substr(0, colon), rest.substr(colon + 1) };
}

// One POST of `body` to etcd's JSON gateway at `path`, on a connection of
// its own (as registryd's EtcdClient makes every call): the reply's JSON.
nlohmann::json etcd_post(const asio::ip::tcp::endpoint& etcd, const std::string& path, const nlohmann::json& body)
{
    namespace http = boost::beast::http;
    asio::io_context io;
    asio::ip::tcp::socket socket(io);
    boost::system::error_code error;
    socket.connect(etcd, error);
    if (!error)
        socket.set_option(asio::ip::tcp::no_delay(true), error);
    http::request<http::string_body> request { http::verb::post, path, 11 };
    request.set(http::field::host, etcd.address().to_string() + ":" + std::to_string(etcd.port()));
    request.set(http::field::content_type, "application/json");
    request.body() = body.dump();
    request.prepare_payload();
    if (!error)
        http::write(socket, request, error);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> response;
    if (!error)
        http::read(socket, buffer, response, error);
    if (error)
        fail("etcd " + path + " failed: " + error.message());
    if (response.result() != http::status::ok)
        fail("etcd " + path + " answered HTTP " + std::to_string(response.result_int()) + ": " + response.body());
    return nlohmann::json::parse(response.body());
}

std::string base64(std::string_view bytes)
{
    std::string out(boost::beast::detail::base64::encoded_size(bytes.size()), '\0');
    out.resize(boost::beast::detail::base64::encode(out.data(), bytes.data(), bytes.size()));
    return out;
}

// The floor under a cluster CREATE: the same transaction registryd's claim
// sends (put the key with a lease if its create revision is 0, else read it),
// on a connection of its own, with a value of a claim's size, on keys of its
// own prefix.
struct EtcdFloor {
    asio::ip::tcp::endpoint etcd;
    std::string lease;

    explicit EtcdFloor(const std::string& url)
    {
        auto [host, port] = etcd_host_port(url);
        etcd = asio::ip::tcp::endpoint(asio::ip::make_address(host), static_cast<unsigned short>(std::stoi(port)));
        auto granted = etcd_post(etcd, "/v3/lease/grant", { { "TTL", "60" } });
        lease = granted.value("ID", std::string());
        if (lease.empty())
            fail("etcd granted no lease: " + granted.dump());
    }
    ~EtcdFloor() { etcd_post(etcd, "/v3/lease/revoke", { { "ID", lease } }); } // its keys go with it

    double txn(const std::string& name)
    {
        static const std::string value(160, 'v'); // about a claim's JSON
        const std::string key = base64("kvbench/floor/" + name);
        const nlohmann::json body {
            { "compare", nlohmann::json::array({ { { "target", "CREATE" }, { "key", key }, { "createRevision", "0" } } }) },
            { "success", nlohmann::json::array({ { { "requestPut", { { "key", key }, { "value", base64(value) }, { "lease", lease } } } } }) },
            { "failure", nlohmann::json::array({ { { "requestRange", { { "key", key } } } } }) },
        };
        auto before = Clock::now();
        auto reply = etcd_post(etcd, "/v3/kv/txn", body);
        double took = microseconds(Clock::now() - before);
        if (!reply.value("succeeded", false))
            fail("etcd's txn on a fresh key kvbench/floor/" + name + " did not succeed: " + reply.dump());
        return took;
    }

    // Until etcd holds `name`'s claim in state "ready": the update a cluster
    // CREATE sends after its reply has landed, so it does not queue in etcd
    // before the next measure's write. Untimed.
    void wait_until_ready(const std::string& name)
    {
        const nlohmann::json body { { "key", base64("kv/names/" + name) } };
        auto deadline = Clock::now() + std::chrono::seconds(10);
        for (;;) {
            auto reply = etcd_post(etcd, "/v3/kv/range", body);
            std::string value;
            if (reply.contains("kvs") && !reply["kvs"].empty()) {
                std::string text = reply["kvs"][0].value("value", std::string());
                value.assign(boost::beast::detail::base64::decoded_size(text.size()), '\0');
                value.resize(boost::beast::detail::base64::decode(value.data(), text.data(), text.size()).first);
            }
            if (nlohmann::json::parse(value.empty() ? "{}" : value).value("state", std::string()) == "ready")
                return;
            if (Clock::now() > deadline)
                fail("etcd does not hold " + name + " as ready 10 s after its CREATE");
            std::this_thread::sleep_for(std::chrono::microseconds(200)); // polling interval, untimed
        }
    }
};

std::string json_percentiles(const char* name, const std::vector<double>& samples)
{
    return json_latency(name, percentiles(samples));
}

// CREATE on a cluster node beside CREATE on a plain registryd and beside the
// bare etcd transaction, taken in turn (local, cluster, txn), `count` times,
// so drift on a shared machine hits all three alike. Between the cluster
// CREATE and the txn, untimed, the claim's update to "ready" (sent as the
// bucket is published, not waited for by CREATE) is let land. The buckets are
// STOPped at the end (untimed), as `create` does.
void cluster_create(const std::string& node_dir, const std::string& local_dir, const std::string& etcd_url, int count)
{
    auto node = connect_registry(node_dir);
    auto local = connect_registry(local_dir);
    EtcdFloor floor(etcd_url);
    std::vector<double> on_node, on_local, txns;
    auto timed_create = [](kv::Client& registry, const std::string& name) {
        auto before = Clock::now();
        call(registry, { "CREATE", name });
        return microseconds(Clock::now() - before);
    };
    for (int i = 0; i < count; ++i) {
        std::string name = "bench-ccreate-" + std::to_string(i);
        on_local.push_back(timed_create(local, name));
        on_node.push_back(timed_create(node, name));
        floor.wait_until_ready(name);
        txns.push_back(floor.txn(name));
    }
    for (int i = 0; i < count; ++i) {
        call(local, { "STOP", "bench-ccreate-" + std::to_string(i) });
        call(node, { "STOP", "bench-ccreate-" + std::to_string(i) });
    }
    std::printf("{\"bench\":\"cluster-create\",\"count\":%d%s%s%s}\n", count, json_percentiles("cluster", on_node).c_str(),
        json_percentiles("local", on_local).c_str(), json_percentiles("txn", txns).c_str());
}

// LOOKUP on node `reader_dir` of names held by node `owner_dir`, beside
// LOOKUP of the owner's own names on the owner and of local names on a plain
// registryd: `buckets` names each, one LOOKUP on each of the three in turn
// for `seconds`.
void cluster_lookup(const std::string& reader_dir, const std::string& owner_dir, const std::string& local_dir, int buckets, double seconds)
{
    auto reader = connect_registry(reader_dir);
    auto owner = connect_registry(owner_dir);
    auto local = connect_registry(local_dir);
    std::vector<std::string> names;
    for (int i = 0; i < buckets; ++i) {
        names.push_back("bench-clookup-" + std::to_string(i));
        pid_t pid = pid_field(call(owner, { "CREATE", names.back() }));
        call(local, { "CREATE", names.back() });
        wait_until_seen(reader, names.back(), pid);
    }
    std::mt19937 random(1);
    std::vector<double> remote, own, plain;
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    while (Clock::now() < deadline) {
        const auto& name = names[random() % names.size()];
        remote.push_back(timed_lookup(reader, name));
        own.push_back(timed_lookup(owner, name));
        plain.push_back(timed_lookup(local, name));
    }
    for (const auto& name : names) {
        call(owner, { "STOP", name });
        call(local, { "STOP", name });
    }
    std::printf("{\"bench\":\"cluster-lookup\",\"buckets\":%d,\"count\":%zu%s%s%s}\n", buckets, remote.size(),
        json_percentiles("remote", remote).c_str(), json_percentiles("own", own).c_str(), json_percentiles("local", plain).c_str());
}

// Kill-to-free across the cluster: CREATE on node `owner_dir`, wait until
// node `reader_dir` sees it (untimed), SIGKILL the bucket; the owner's name
// table drops it (its local kill-to-gone), then LOOKUP on the reader,
// as fast as it answers, until NOTFOUND (the owner's release in etcd, and
// etcd's watch event to the reader). Beside it, in turn, the plain
// registryd's kill-to-gone (kill_to_gone_once, as `kill` measures it).
void cluster_kill(const std::string& reader_dir, const std::string& owner_dir, const std::string& local_dir, int count)
{
    auto reader = connect_registry(reader_dir);
    auto owner = connect_registry(owner_dir);
    auto owner_table = open_names(owner_dir);
    auto local = connect_registry(local_dir);
    auto local_table = open_names(local_dir);
    if (!owner_table || !local_table)
        fail("no name table for " + owner_dir + " or " + local_dir);
    std::vector<double> freed, owner_gone, exits, local_gone, local_exits;
    for (int i = 0; i < count; ++i) {
        local_gone.push_back(kill_to_gone_once(local, *local_table, "bench-kill-" + std::to_string(i % 8), local_exits));
        std::string name = "bench-ckill-" + std::to_string(i);
        pid_t pid = pid_field(call(owner, { "CREATE", name }));
        wait_until_seen(reader, name, pid);
        auto before = kill_and_see_exit(pid, exits);
        wait_until_gone(*owner_table, name, pid);
        owner_gone.push_back(microseconds(Clock::now() - before));
        wait_until_not_found(reader, name, before, std::chrono::seconds(10), std::chrono::milliseconds(0),
            "on the other node still finds it 10 s after its bucket was killed");
        freed.push_back(microseconds(Clock::now() - before));
    }
    std::printf("{\"bench\":\"cluster-kill\",\"count\":%d%s%s%s%s%s}\n", count, json_percentiles("freed", freed).c_str(),
        json_percentiles("owner_gone", owner_gone).c_str(), json_percentiles("exit_seen", exits).c_str(),
        json_percentiles("local", local_gone).c_str(), json_percentiles("local_exit_seen", local_exits).c_str());
}

// Kill-to-free after a node dies: CREATE on node `owner_dir`, wait until
// node `reader_dir` sees it, read how long the owner's claims surely stand
// (INFO's cluster_lease_valid_ms), SIGKILL the owner's registryd (its
// buckets die with it), then LOOKUP on the reader every millisecond until
// NOTFOUND: etcd's lease expiry. One repetition; run.sh restarts the owner.
void cluster_node_kill(const std::string& reader_dir, const std::string& owner_dir)
{
    auto reader = connect_registry(reader_dir);
    const std::string name = "bench-nodekill";
    pid_t pid;
    {
        auto owner = connect_registry(owner_dir);
        pid = pid_field(call(owner, { "CREATE", name }));
    }
    wait_until_seen(reader, name, pid);
    double valid_ms = std::stod(registry_info(owner_dir, "cluster_lease_valid_ms"));
    std::vector<double> exits;
    auto before = kill_and_see_exit(instance_record(owner_dir).pid, exits);
    // Polled every millisecond: the figure is seconds.
    wait_until_not_found(reader, name, before, std::chrono::seconds(60), std::chrono::milliseconds(1),
        "still finds it 60 s after its node was killed");
    std::printf("{\"bench\":\"cluster-node-kill\",\"freed_ms\":%.1f,\"lease_valid_ms\":%.0f,\"exit_seen_us\":%.1f}\n",
        std::chrono::duration<double, std::milli>(Clock::now() - before).count(), valid_ms, exits[0]);
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app { "kvbench: measurements for BENCHMARKS.md (run by bench/run.sh)" };
    app.require_subcommand(1);
    std::string run_dir;
    app.add_option("--run-dir", run_dir, "run dir of a running registryd (all but reference-restart and spawn-floor)");
    app.fallthrough();
    std::uint64_t keys = 1000;
    int threads = 1, buckets = 100, count = 1000;
    double seconds = 2;
    auto* direct = app.add_subcommand("direct-get", "GET ops/s straight from a bucket's segment");
    direct->add_option("--keys", keys);
    direct->add_option("--threads", threads);
    direct->add_option("--seconds", seconds);
    bool contended = false;
    direct->add_flag("--contended", contended, "a writer SETs other keys of the bucket during the measurement");
    std::size_t batch = 1;
    direct->add_option("--batch", batch, "read this many keys at a time, as one direct MGET")->check(CLI::Range(std::size_t(1), std::size_t(4096)));
    auto* lookups = app.add_subcommand("lookup", "LOOKUP ops/s through the name table and through the socket");
    lookups->add_option("--buckets", buckets);
    lookups->add_option("--seconds", seconds);
    auto* creates = app.add_subcommand("create", "CREATE latency, spawn to ready");
    creates->add_option("--count", count);
    bool stop_each = false;
    creates->add_flag("--stop-each", stop_each, "STOP each bucket before the next CREATE");
    auto* floors = app.add_subcommand("spawn-floor", "posix_spawn of a small static program until its readiness line: CREATE's floor");
    floors->add_option("--count", count);
    std::string ready_program;
    floors->add_option("--program", ready_program, "the program (kvbench-ready)")->required();
    auto* kills = app.add_subcommand("kill", "kill-to-gone latency, beside the bare pidfd floor");
    kills->add_option("--count", count);
    auto* scales = app.add_subcommand("scale", "many live buckets: time, memory, kill-all-to-empty");
    scales->add_option("--count", count);
    int clients = 4;
    scales->add_option("--clients", clients, "CREATE from this many connections at once");
    auto* fills = app.add_subcommand("fill", "create buckets and leave them running");
    fills->add_option("--count", count);
    fills->add_option("--clients", clients, "CREATE from this many connections at once");
    auto* restarts = app.add_subcommand("restart", "kill to restarted-and-ready, a permanent bucket");
    restarts->add_option("--count", count);
    auto* references = app.add_subcommand("reference-restart", "kill to restarted-and-ready, another supervisor's bucketd");
    std::string socket;
    int min_uptime_ms = 0;
    references->add_option("--socket", socket, "the supervised bucketd's socket")->required();
    references->add_option("--count", count);
    references->add_option("--min-uptime-ms", min_uptime_ms, "wait this long after a restart before the next kill");
    TextOptions text_options { 1000, 50, 3, 2000, 200 };
    auto* texts = app.add_subcommand("text", "the text server (registryd --text-listen) beside the bucket's RESP socket");
    texts->add_option("--keys", text_options.keys, "keys preloaded, each request takes one at random")->capture_default_str();
    texts->add_option("--clients", text_options.clients, "blocking clients at once, one request outstanding each")->capture_default_str();
    texts->add_option("--seconds", text_options.seconds, "for each of text GET, RESP GET, text PUT, RESP SET")->capture_default_str();
    texts->add_option("--connects", text_options.connects, "connect + GET + close, one after the other")->capture_default_str();
    texts->add_option("--idle", text_options.idle, "idle connections held for the memory figures (at least the 16 processes textd may keep waiting)")->capture_default_str()->check(CLI::Range(16, 100000));
    std::string local_dir, owner_dir, etcd_url;
    auto* cluster_creates = app.add_subcommand("cluster-create", "CREATE on a cluster node beside a plain registryd and etcd's bare txn");
    cluster_creates->add_option("--local-run-dir", local_dir, "run dir of a plain registryd (no --cluster)")->required();
    cluster_creates->add_option("--etcd", etcd_url, "the cluster's etcd, http://HOST:PORT")->required();
    cluster_creates->add_option("--count", count);
    auto* cluster_lookups = app.add_subcommand("cluster-lookup", "LOOKUP of another node's name beside local ones");
    cluster_lookups->add_option("--owner-run-dir", owner_dir, "run dir of the node that creates the names")->required();
    cluster_lookups->add_option("--local-run-dir", local_dir, "run dir of a plain registryd (no --cluster)")->required();
    cluster_lookups->add_option("--buckets", buckets);
    cluster_lookups->add_option("--seconds", seconds);
    auto* cluster_kills = app.add_subcommand("cluster-kill", "a bucket killed on one node until another's LOOKUP says NOTFOUND");
    cluster_kills->add_option("--owner-run-dir", owner_dir, "run dir of the node whose buckets are killed")->required();
    cluster_kills->add_option("--local-run-dir", local_dir, "run dir of a plain registryd (no --cluster)")->required();
    cluster_kills->add_option("--count", count);
    auto* node_kills = app.add_subcommand("cluster-node-kill", "a node's registryd killed until another's LOOKUP says NOTFOUND");
    node_kills->add_option("--owner-run-dir", owner_dir, "run dir of the node to kill")->required();
    CLI11_PARSE(app, argc, argv);
    std::signal(SIGPIPE, SIG_IGN);
    if (*references) {
        reference_restart(socket, count, min_uptime_ms);
        return 0;
    }
    if (*floors) {
        spawn_floor(ready_program, count);
        return 0;
    }
    if (run_dir.empty())
        fail("--run-dir is required");
    try {
        run_dir_owner = kv::RunDir::open_trusted(run_dir).owner();
    } catch (const std::exception& error) {
        fail(error.what());
    }
    if (*direct)
        direct_get(run_dir, keys, threads, seconds, contended, batch);
    else if (*lookups)
        lookup(run_dir, buckets, seconds);
    else if (*creates)
        create(run_dir, count, stop_each);
    else if (*fills)
        fill(run_dir, count, clients);
    else if (*restarts)
        restart(run_dir, count);
    else if (*kills)
        kill_to_gone(run_dir, count);
    else if (*scales)
        scale(run_dir, count, clients);
    else if (*texts)
        text(run_dir, text_options);
    else if (*cluster_creates)
        cluster_create(run_dir, local_dir, etcd_url, count);
    else if (*cluster_lookups)
        cluster_lookup(run_dir, owner_dir, local_dir, buckets, seconds);
    else if (*cluster_kills)
        cluster_kill(run_dir, owner_dir, local_dir, count);
    else if (*node_kills)
        cluster_node_kill(run_dir, owner_dir);
    return 0;
}
