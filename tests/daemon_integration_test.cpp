// registryd as an operator runs it: in a terminal (Ctrl-C, a closed terminal,
// a closed pipe), under systemd (sd_notify readiness, status, watchdog, the
// unit file), and read through its log (time, level, journal priorities, who
// was refused or stopped a bucket, and no flood a client can cause).
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "daemon_fixture.h"
#include "error_code.h"
#include "run_dir.h"
#include "system_error.h"

using namespace kv::test;
using kv::resp::Value;

namespace {

std::vector<std::string> lines_of(const std::string& text)
{
    std::vector<std::string> lines;
    std::istringstream stream(text);
    for (std::string line; std::getline(stream, line);)
        lines.push_back(line);
    return lines;
}

// The first line of the log holding every one of `parts`, or "".
std::string line_with(const std::string& log, std::initializer_list<std::string> parts)
{
    for (const auto& line : lines_of(log)) {
        bool all = true;
        for (const auto& part : parts)
            all = all && line.find(part) != std::string::npos;
        if (all)
            return line;
    }
    return {};
}

std::size_t count_lines_with(const std::string& log, const std::string& part)
{
    std::size_t count = 0;
    for (const auto& line : lines_of(log))
        count += line.find(part) != std::string::npos;
    return count;
}

bool wait_for_log(const RegistryDaemon& daemon, const std::string& text, std::chrono::milliseconds timeout = 10s)
{
    auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
    while (daemon.log().find(text) == std::string::npos) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::yield();
    }
    return true;
}

std::string this_peer() { return "(pid " + std::to_string(::getpid()) + ", uid " + std::to_string(::getuid()) + ")"; }

// What systemd would be for registryd: a datagram socket named by
// NOTIFY_SOCKET, each datagram one sd_notify call ("READY=1\nSTATUS=...").
class NotifySocket {
public:
    NotifySocket()
        : path_(directory_.path() + "/notify")
        , fd_(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0))
    {
        sockaddr_un address {};
        address.sun_family = AF_UNIX;
        path_.copy(address.sun_path, sizeof address.sun_path - 1);
        if (!fd_ || ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == -1)
            throw kv::SystemError("unable to bind", path_, errno);
    }
    std::string variable() const { return "NOTIFY_SOCKET=" + path_; }

    struct Message {
        std::string text;
        std::chrono::steady_clock::time_point arrived;
        bool has(const std::string& assignment) const { return ("\n" + text + "\n").find("\n" + assignment + "\n") != std::string::npos; }
        bool has_prefix(const std::string& prefix) const { return ("\n" + text).find("\n" + prefix) != std::string::npos; }
    };
    // The next datagram, or nullopt after `timeout`.
    std::optional<Message> receive(std::chrono::milliseconds timeout)
    {
        pollfd poll_fd { fd_.get(), POLLIN, 0 };
        if (::poll(&poll_fd, 1, static_cast<int>(timeout.count())) != 1)
            return std::nullopt;
        char buffer[4096];
        auto n = ::recv(fd_.get(), buffer, sizeof buffer, 0);
        if (n < 0)
            return std::nullopt;
        return Message { std::string(buffer, static_cast<std::size_t>(n)), std::chrono::steady_clock::now() };
    }
    // Datagrams up to and including the first with `assignment` as a line
    // ("READY=1"), or up to `timeout`; what came before is in `skipped`.
    std::optional<Message> wait_for(const std::string& assignment, std::vector<Message>* skipped = nullptr,
        std::chrono::milliseconds timeout = 10s)
    {
        auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0)
                return std::nullopt;
            auto message = receive(left);
            if (!message)
                return std::nullopt;
            if (message->has(assignment))
                return message;
            if (skipped)
                skipped->push_back(*message);
        }
    }

private:
    TemporaryDirectory directory_;
    std::string path_;
    kv::UniqueFd fd_;
};

} // namespace

// ---- Signals and sessions ----

TEST(Daemon, BucketsRunInSessionsOfTheirOwnOutsideRegistrydsProcessGroup)
{
    RegistryDaemon daemon;
    // registryd inherits the test's session and group. When their leader lives
    // in a parent pid namespace (a CI container started from outside it),
    // getsid and getpgid answer 0 rather than an id; either way no bucket may
    // share them, and a bucket leads its own, which is in our namespace.
    const pid_t registry_session = ::getsid(daemon.pid());
    const pid_t registry_group = ::getpgid(daemon.pid());
    ASSERT_GE(registry_session, 0) << "getsid(registryd): " << std::strerror(errno);
    ASSERT_GE(registry_group, 0) << "getpgid(registryd): " << std::strerror(errno);
    for (const auto& name : { "a", "b" }) {
        const auto pid = static_cast<pid_t>(pid_of(daemon.create(name)));
        EXPECT_EQ(::getsid(pid), pid) << "bucket " << name << " leads a session of its own";
        EXPECT_NE(::getsid(pid), registry_session);
        EXPECT_EQ(::getpgid(pid), pid);
        EXPECT_NE(::getpgid(pid), registry_group) << "a terminal's Ctrl-C would reach bucket " << name;
    }
}

TEST(Daemon, CtrlCReachesRegistrydAloneWhichThenStopsEveryBucket)
{
    // As a shell runs a foreground job: registryd leads its own process group,
    // and the terminal sends SIGINT to the whole group.
    DaemonOptions options;
    options.own_process_group = true;
    RegistryDaemon daemon(options);
    ASSERT_EQ(::getpgid(daemon.pid()), daemon.pid());
    std::vector<std::pair<std::string, pid_t>> buckets;
    std::vector<kv::UniqueFd> pidfds;
    for (const auto& name : { "a", "b", "c" }) {
        const auto pid = static_cast<pid_t>(pid_of(daemon.create(name)));
        buckets.emplace_back(name, pid);
        pidfds.push_back(open_pidfd(pid));
        ASSERT_TRUE(pidfds.back());
    }
    ASSERT_GT(daemon.pid(), 1);
    ASSERT_EQ(::kill(-daemon.pid(), SIGINT), 0);
    auto exit = daemon.stop(0); // already signalled: only waits
    EXPECT_EQ(exit.code, CLD_EXITED);
    EXPECT_EQ(exit.status, 0);
    for (const auto& pidfd : pidfds)
        EXPECT_TRUE(wait_readable(pidfd.get(), 0ms)) << "registryd exited before a bucket";

    // The order an operator reads: the signal first, then each bucket stopped
    // by registryd (SIGTERM, so exit status 0) and reaped, then "stopped".
    const auto log = daemon.log();
    const auto received = log.find("received SIGINT, stopping 3 buckets");
    ASSERT_NE(received, std::string::npos) << log;
    for (const auto& [name, pid] : buckets) {
        const std::string bucket = "bucket " + name + " (pid " + std::to_string(pid) + ", id ";
        const auto exited = line_with(log, { bucket, ") exited with status 0" });
        ASSERT_FALSE(exited.empty()) << "bucket " << name << " was not reaped by registryd:\n" << log;
        EXPECT_GT(log.find(exited), received) << "bucket " << name << " ended before registryd heard SIGINT:\n" << log;
        const auto stopping = line_with(log, { bucket, ") stopping" });
        EXPECT_GT(log.find(stopping), received) << "registryd stops each bucket after the signal:\n" << log;
    }
    EXPECT_GT(log.find("]: stopped\n"), received);
}

TEST(Daemon, SigpipeKillsNeitherRegistrydNorABucket)
{
    RegistryDaemon daemon;
    auto bucket = daemon.create("a");
    ASSERT_EQ(kill_process(pid_of(bucket), SIGPIPE), 0);
    ASSERT_EQ(kill_process(daemon.pid(), SIGPIPE), 0);
    // A round trip after the signal: had it killed either, this would fail.
    EXPECT_EQ(kv::Client::connect(bucket.field("socket")->text).call({ "PING" }).text, "PONG");
    EXPECT_EQ(daemon.call({ "LOOKUP", "a" }).field("pid")->integer, pid_of(bucket));
}

// ---- Logs ----

TEST(Daemon, LogLinesCarryAnRfc3339UtcTimeToTheMillisecondAndALevel)
{
    const auto before = std::chrono::system_clock::now() - 1s;
    std::string log;
    {
        RegistryDaemon daemon;
        daemon.create("a");
        EXPECT_EQ(daemon.call({ "STOP", "a" }).text, "OK");
        daemon.stop();
        log = daemon.log();
    }
    const auto after = std::chrono::system_clock::now() + 1s;
    const std::regex format(R"(^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z (error|warning|notice|info|debug) (registryd|bucketd)\[\d+\]: .+$)");
    const auto lines = lines_of(log);
    ASSERT_GE(lines.size(), 5u) << log;
    for (const auto& line : lines) {
        std::smatch match;
        ASSERT_TRUE(std::regex_match(line, match, format)) << line;
        std::tm utc {};
        utc.tm_year = std::stoi(match[1]) - 1900;
        utc.tm_mon = std::stoi(match[2]) - 1;
        utc.tm_mday = std::stoi(match[3]);
        utc.tm_hour = std::stoi(match[4]);
        utc.tm_min = std::stoi(match[5]);
        utc.tm_sec = std::stoi(match[6]);
        const auto at = std::chrono::system_clock::from_time_t(::timegm(&utc));
        EXPECT_TRUE(at >= std::chrono::floor<std::chrono::seconds>(before) && at <= after) << "not now, or not UTC: " << line;
    }
    EXPECT_NE(line_with(log, { " notice registryd[", "]: listening on " }), "") << log;
    EXPECT_NE(line_with(log, { " info registryd[", "]: bucket a (pid ", ") ready" }), "") << log;
    EXPECT_NE(line_with(log, { " notice registryd[", "]: stopped" }), "") << log;
}

TEST(Daemon, LogLinesToTheJournalCarrySdDaemonPrioritiesInsteadOfATime)
{
    DaemonOptions options;
    options.journal_stderr = true;
    options.arguments = { "--log-level", "debug" };
    std::string log;
    {
        RegistryDaemon daemon(options);
        auto bucket = daemon.create("a");
        auto monitor = daemon.monitor("a");
        ASSERT_EQ(kill_process(pid_of(bucket), SIGKILL), 0);
        monitor.read_reply();
        daemon.stop();
        log = daemon.log();
    }
    const std::regex format(R"(^<[3-7]>(registryd|bucketd)\[\d+\]: .+$)");
    for (const auto& line : lines_of(log))
        EXPECT_TRUE(std::regex_match(line, format)) << line;
    EXPECT_NE(line_with(log, { "<5>registryd[", "]: listening on " }), "") << log;
    EXPECT_NE(line_with(log, { "<6>registryd[", "]: bucket a (pid ", ") ready" }), "") << log;
    EXPECT_NE(line_with(log, { "<4>registryd[", "]: bucket a (pid ", ") killed by SIGKILL" }), "") << log;
}

TEST(Daemon, LogLevelLeavesOutLessSevereLines)
{
    RegistryDaemon daemon({ "--log-level", "warning" });
    auto bucket = daemon.create("a");
    auto monitor = daemon.monitor("a");
    ASSERT_EQ(kill_process(pid_of(bucket), SIGKILL), 0);
    monitor.read_reply();
    daemon.stop();
    const auto log = daemon.log();
    EXPECT_EQ(log.find("listening on"), std::string::npos) << log;
    EXPECT_EQ(log.find(") ready"), std::string::npos) << log;
    EXPECT_NE(line_with(log, { " warning registryd[", ") killed by SIGKILL" }), "") << log;

    auto refused = run_program({ binary("registryd"), "--log-level", "loud" });
    EXPECT_EQ(refused.exit_code, 2);
    EXPECT_NE(refused.err.find("not a log level: loud"), std::string::npos) << refused.err;
}

TEST(Daemon, RefusedRequestsAndStopsAreLoggedWithThePeersPidAndUid)
{
    RegistryDaemon daemon({ "--max-buckets", "1" });
    daemon.create("a");
    EXPECT_EQ(kv::error_code_of(daemon.call({ "CREATE", "b" }).text), kv::ErrorCode::limit);
    EXPECT_TRUE(wait_for_log(daemon, "LIMIT unable to create bucket b"));
    EXPECT_NE(line_with(daemon.log(), { " warning registryd[", "]: refused a request of a client of ", "LIMIT unable to create bucket b", this_peer() }), "")
        << daemon.log();
    // Once: the reply is logged where it is given, not again when it is sent
    // (both happen before the client has its reply).
    EXPECT_EQ(count_lines_with(daemon.log(), "LIMIT unable to create bucket b"), 1u) << daemon.log();

    EXPECT_EQ(daemon.call({ "STOP", "a" }).text, "OK");
    EXPECT_NE(line_with(daemon.log(), { " notice registryd[", "]: STOP a asked by a client " + this_peer() }), "") << daemon.log();

    // A protocol error closes the connection, and says who sent it.
    exchange_raw(kv::registry_socket_path(daemon.run_dir()), "*x\r\n");
    EXPECT_TRUE(wait_for_log(daemon, "protocol error from a client of "));
    EXPECT_NE(line_with(daemon.log(), { "protocol error from a client of ", this_peer() }), "") << daemon.log();
}

TEST(Daemon, AFloodOfBadRequestsMakesABoundedNumberOfLogLines)
{
    RegistryDaemon daemon;
    const auto socket = kv::registry_socket_path(daemon.run_dir());
    // Bad requests until the log says it held some back (it must, well
    // before the deadline: 20 lines at once, then 10 a second).
    const auto start = std::chrono::steady_clock::now();
    std::size_t sent = 0;
    while (daemon.log().find("suppressed ") == std::string::npos) {
        ASSERT_LT(std::chrono::steady_clock::now() - start, scaled(30s)) << "nothing was suppressed after " << sent << " bad requests";
        exchange_raw(socket, "*x\r\n");
        ++sent;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto log = daemon.log();
    const auto logged = count_lines_with(log, "protocol error from a client of ");
    EXPECT_LE(static_cast<double>(logged), 20 + 10 * seconds + 1) << sent << " requests in " << seconds << " s";
    EXPECT_LT(logged, sent);
    const auto suppressed = line_with(log, { " warning registryd[", "]: suppressed " });
    ASSERT_NE(suppressed, "");
    const auto told = std::stoul(suppressed.substr(suppressed.find("]: suppressed ") + 14));
    EXPECT_EQ(logged + told, sent) << "every bad request is either logged or counted";
    EXPECT_EQ(daemon.call({ "PING" }).text, "PONG");
}

// ---- systemd ----

TEST(Daemon, ReadyIsToldOnlyOnceTheRegistrySocketAcceptsAndStatusFollowsTheBuckets)
{
    NotifySocket systemd;
    DaemonOptions options;
    options.environment = { systemd.variable() };
    options.wait_until_listening = false;
    RegistryDaemon daemon(options);
    std::vector<NotifySocket::Message> before;
    auto ready = systemd.wait_for("READY=1", &before);
    ASSERT_TRUE(ready) << daemon.log();
    // Connected straight after READY=1, with no retry: it must be listening.
    EXPECT_EQ(daemon.call({ "PING" }).text, "PONG");
    EXPECT_TRUE(ready->has("STATUS=0 buckets")) << ready->text;
    EXPECT_TRUE(before.empty()) << before.front().text;

    daemon.create("a");
    auto one = systemd.wait_for("STATUS=1 buckets");
    EXPECT_TRUE(one);
    daemon.create("b");
    EXPECT_TRUE(systemd.wait_for("STATUS=2 buckets"));
    EXPECT_EQ(daemon.call({ "STOP", "a" }).text, "OK");
    EXPECT_TRUE(systemd.wait_for("STATUS=1 buckets"));

    // The notification socket is registryd's alone: buckets never see it.
    auto bucket = daemon.call({ "LOOKUP", "b" });
    std::ifstream environ_file("/proc/" + std::to_string(pid_of(bucket)) + "/environ");
    std::string environment((std::istreambuf_iterator<char>(environ_file)), std::istreambuf_iterator<char>());
    EXPECT_NE(environment.find("KV_INSTANCE="), std::string::npos);
    EXPECT_EQ(environment.find("NOTIFY_SOCKET="), std::string::npos);

    daemon.stop(SIGTERM);
    std::vector<NotifySocket::Message> skipped;
    auto stopping = systemd.wait_for("STOPPING=1", &skipped);
    ASSERT_TRUE(stopping);
    EXPECT_TRUE(stopping->has_prefix("STATUS=received SIGTERM")) << stopping->text;
    for (const auto& message : skipped)
        EXPECT_FALSE(message.has("WATCHDOG=1")) << "no WATCHDOG_USEC, yet a watchdog ping";
}

TEST(Daemon, WatchdogIsPingedFromTheLoopAtHalfItsPeriod)
{
    NotifySocket systemd;
    DaemonOptions options;
    options.environment = { systemd.variable(), "WATCHDOG_USEC=1000000" };
    RegistryDaemon daemon(options);
    ASSERT_TRUE(systemd.wait_for("READY=1"));
    auto first = systemd.wait_for("WATCHDOG=1", nullptr, 5s);
    auto second = systemd.wait_for("WATCHDOG=1", nullptr, 5s);
    ASSERT_TRUE(first && second);
    const auto interval = std::chrono::duration_cast<std::chrono::milliseconds>(second->arrived - first->arrived);
    // Half of 1 s: never early (a timer does not fire before its time), and
    // well inside the period, or systemd would count a miss. Generous above:
    // a loaded machine delays a turn of the loop.
    EXPECT_GE(interval, 450ms);
    EXPECT_LT(interval, 1000ms);

    // Meant for another pid: not ours to ping.
    NotifySocket other;
    DaemonOptions not_ours;
    not_ours.environment = { other.variable(), "WATCHDOG_USEC=200000", "WATCHDOG_PID=1" };
    RegistryDaemon second_daemon(not_ours);
    std::vector<NotifySocket::Message> skipped;
    ASSERT_TRUE(other.wait_for("READY=1", &skipped));
    second_daemon.stop();
    ASSERT_TRUE(other.wait_for("STOPPING=1", &skipped));
    for (const auto& message : skipped)
        EXPECT_FALSE(message.has("WATCHDOG=1"));
}

TEST(Daemon, TheUnitFilePassesSystemdAnalyzeVerify)
{
    const std::string unit = std::string(KV_SOURCE_DIR) + "/packaging/kv-registryd.service";
    std::ifstream file(unit);
    ASSERT_TRUE(file) << "missing " << unit;
    const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    for (const auto& line : { "Type=notify\n", "ExecStart=/usr/bin/registryd --run-dir /run/kv\n", "RuntimeDirectory=kv\n", "NoNewPrivileges=yes\n" })
        EXPECT_NE(text.find(line), std::string::npos) << line;
    EXPECT_EQ(text.find("PrivateDevices=yes"), std::string::npos) << "buckets need the host's /dev/shm";

    const auto analyze = find_program("systemd-analyze");
    KV_REQUIRE(!analyze.empty(), "systemd-analyze on PATH (Debian package systemd)");
    // verify fails on an ExecStart binary that does not exist, and
    // /usr/bin/registryd is not installed here: check a copy that runs the
    // registryd just built, the one line that differs. It exits 0 on unknown
    // keys and bad values, only warning: so no output at all is the pass.
    // --man=no: the man page is installed with the package, not here.
    TemporaryDirectory directory;
    std::string copy = text;
    const std::string exec = "ExecStart=/usr/bin/registryd";
    copy.replace(copy.find(exec), exec.size(), "ExecStart=" + binary("registryd"));
    const std::string copy_path = directory.path() + "/kv-registryd.service";
    std::ofstream(copy_path) << copy;
    auto result = run_program({ analyze, "verify", "--man=no", copy_path });
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(result.out + result.err, "");

    // And the check can fail: a misspelt key is reported.
    std::ofstream(copy_path) << copy << "[Service]\nNoNewPrivilege=yes\n";
    auto broken = run_program({ analyze, "verify", "--man=no", copy_path });
    EXPECT_NE(broken.err.find("Unknown key 'NoNewPrivilege'"), std::string::npos) << broken.err;
}
