#include "daemon_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

#include "instance_record.h"
#include "name_table.h"
#include "run_dir.h"
#include "system_error.h"

extern char** environ;

namespace kv::test {

std::string binary(const std::string& name) { return std::string(KV_BIN_DIR) + "/" + name; }

std::vector<char*> c_strings(std::vector<std::string>& strings)
{
    std::vector<char*> pointers;
    for (auto& s : strings)
        pointers.push_back(s.data());
    pointers.push_back(nullptr);
    return pointers;
}

namespace {

std::vector<std::string> environment_with(const std::vector<std::string>& extra)
{
    std::vector<std::string> environment;
    for (char** entry = environ; *entry; ++entry) {
        std::string text = *entry;
        bool overridden = false;
        for (const auto& e : extra)
            overridden |= text.substr(0, text.find('=') + 1) == e.substr(0, e.find('=') + 1);
        if (!overridden)
            environment.push_back(text);
    }
    environment.insert(environment.end(), extra.begin(), extra.end());
    return environment;
}

ProcessExit wait_exit(int pidfd)
{
    siginfo_t info {};
    check(::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED), "unable to wait for", "child");
    return ProcessExit { info.si_code, info.si_status };
}

} // namespace

std::string signal_text(int signal) { return std::string("SIG") + ::sigabbrev_np(signal); }

int kill_process(long long pid, int signal)
{
    if (pid < 2)
        throw std::logic_error("refusing to kill pid " + std::to_string(pid));
    return ::kill(static_cast<pid_t>(pid), signal);
}

UniqueFd open_pidfd(pid_t pid)
{
    return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

namespace {

// poll(2) on one descriptor, retried on EINTR; the events seen, 0 on timeout.
short poll_one(int fd, short events, std::chrono::milliseconds timeout)
{
    pollfd entry { fd, events, 0 };
    for (;;) {
        int ready = ::poll(&entry, 1, static_cast<int>(timeout.count()));
        if (ready == -1 && errno == EINTR)
            continue;
        return ready == 1 ? entry.revents : 0;
    }
}

} // namespace

bool wait_readable(int fd, std::chrono::milliseconds timeout) { return poll_one(fd, POLLIN, timeout) != 0; }

std::chrono::milliseconds scaled(std::chrono::milliseconds deadline)
{
    static const long factor = [] {
        const char* text = std::getenv("KV_TEST_TIME_SCALE");
        const long value = text ? std::atol(text) : 1;
        return value >= 1 ? value : 1;
    }();
    return deadline * factor;
}

void keep_sanitizer_reports(const std::string& what, const std::string& output)
{
    const char* directory = std::getenv("KV_SANITIZER_REPORTS");
    if (!directory || output.find("runtime error:") == std::string::npos)
        return;
    static std::atomic<int> count { 0 };
    const std::string path = std::string(directory) + "/stderr." + what + "." + std::to_string(::getpid()) + "."
        + std::to_string(count++);
    std::ofstream(path) << output;
    ADD_FAILURE() << "a sanitizer report in the output of " << what << ", kept in " << path << ":\n" << output;
}

ProgramResult run_program(const std::vector<std::string>& argv, const std::vector<std::string>& environment,
    const std::string& stdin_file)
{
    Pipe out = make_pipe("program stdout");
    Pipe err = make_pipe("program stderr");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out.write_end.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, err.write_end.get(), 2);
    posix_spawn_file_actions_addopen(&actions, 0, stdin_file.c_str(), O_RDONLY, 0);
    auto arguments = argv;
    auto environment_strings = environment_with(environment);
    auto c_arguments = c_strings(arguments);
    auto c_environment = c_strings(environment_strings);
    pid_t pid;
    int error = ::posix_spawn(&pid, arguments[0].c_str(), &actions, nullptr, c_arguments.data(), c_environment.data());
    posix_spawn_file_actions_destroy(&actions);
    if (error)
        throw SystemError("unable to spawn", arguments[0], error);
    out.write_end.reset();
    err.write_end.reset();
    ProgramResult result;
    pollfd fds[2] = { { out.read_end.get(), POLLIN, 0 }, { err.read_end.get(), POLLIN, 0 } };
    int open_count = 2;
    while (open_count > 0) {
        if (::poll(fds, 2, 30000) <= 0)
            break;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
                continue;
            char buffer[4096];
            auto n = ::read(fds[i].fd, buffer, sizeof buffer);
            if (n <= 0) {
                fds[i].fd = -1;
                --open_count;
            } else {
                (i == 0 ? result.out : result.err).append(buffer, static_cast<std::size_t>(n));
            }
        }
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    keep_sanitizer_reports(std::filesystem::path(arguments[0]).filename().string(), result.err);
    return result;
}

TemporaryDirectory::TemporaryDirectory()
{
    char pattern[] = "/tmp/kvt-XXXXXX";
    if (!::mkdtemp(pattern))
        throw SystemError("unable to create temporary directory", pattern, errno);
    path_ = pattern;
}

SecondUser::SecondUser()
{
    ::chmod(programs_.path().c_str(), 0755);
    for (const char* name : { "registryd", "bucketd", "kvctl" })
        std::filesystem::copy_file(binary(name), program(name));
}

std::string SecondUser::missing()
{
    if (::geteuid() != 0)
        return "root, to act as a second user";
    if (find_program("setpriv").empty())
        return "setpriv on PATH, to act as a second user (util-linux)";
    return {};
}

std::vector<std::string> SecondUser::wrapper(const std::string& groups) const
{
    return { find_program("setpriv"), "--reuid=" + std::to_string(uid), "--regid=" + std::to_string(uid),
        groups.empty() ? "--clear-groups" : "--groups=" + groups };
}

ProgramResult SecondUser::run(const std::vector<std::string>& command, const std::string& groups) const
{
    auto argv = wrapper(groups);
    argv.insert(argv.end(), command.begin(), command.end());
    return run_program(argv);
}

TemporaryDirectory::~TemporaryDirectory()
{
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

namespace {

// The text of a file under /proc/PID, "" if the process went meanwhile: a
// read of /proc/PID/stat after its process was reaped fails with ESRCH, and
// libstdc++'s filebuf reports that by throwing, whatever the stream's mask.
std::string read_proc_file(const std::string& path)
{
    try {
        std::ifstream file(path);
        return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    } catch (const std::exception&) {
        return {};
    }
}

} // namespace

std::vector<ChildProcess> children_of(pid_t parent)
{
    std::vector<ChildProcess> children;
    DIR* proc = ::opendir("/proc");
    if (!proc)
        return children;
    while (dirent* entry = ::readdir(proc)) {
        char* end;
        long pid = std::strtol(entry->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        const std::string text = read_proc_file("/proc/" + std::string(entry->d_name) + "/stat");
        auto close = text.rfind(')');
        if (close == std::string::npos)
            continue;
        std::istringstream rest(text.substr(close + 2));
        char state;
        long ppid;
        rest >> state >> ppid;
        if (ppid != parent)
            continue;
        std::string cmdline = read_proc_file("/proc/" + std::string(entry->d_name) + "/cmdline");
        if (!cmdline.empty() && cmdline.back() == '\0')
            cmdline.pop_back();
        for (auto& c : cmdline)
            c = c == '\0' ? ' ' : c;
        children.push_back(ChildProcess { static_cast<pid_t>(pid), state, cmdline });
    }
    ::closedir(proc);
    return children;
}

std::vector<std::string> segments_with_prefix(const std::string& prefix)
{
    std::vector<std::string> found;
    for (const auto& name : files_in("/dev/shm")) {
        if (("/" + name).rfind(prefix, 0) == 0)
            found.push_back(name);
    }
    return found;
}

std::string instance_of(const std::string& run_dir)
{
    std::ifstream file(run_dir + "/" + lock_file_name);
    std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    auto record = decode_instance_record(text);
    return record ? record->instance : std::string();
}

std::unique_ptr<NameTableReader> open_name_table(const std::string& run_dir)
{
    auto dir = RunDir::open_trusted(run_dir);
    auto record = read_instance_record(dir);
    return record ? NameTableReader::open(record->names_segment, dir.owner()) : nullptr;
}

std::vector<std::string> bucket_segments(const std::string& run_dir)
{
    auto instance = instance_of(run_dir);
    if (instance.empty())
        return {};
    return segments_with_prefix(kv::segment_prefix(instance) + "b");
}

std::vector<std::string> files_in(const std::string& directory)
{
    std::vector<std::string> names;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(directory, error))
        names.push_back(entry.path().filename().string());
    return names;
}

void make_socket_file(const std::string& path)
{
    UniqueFd fd(check(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "unable to create socket for", path));
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    path.copy(address.sun_path, sizeof address.sun_path - 1);
    check(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), "unable to bind", path);
}

std::size_t open_descriptor_count(pid_t pid, int below)
{
    std::size_t count = 0;
    for (const auto& name : files_in("/proc/" + std::to_string(pid) + "/fd"))
        count += std::stoi(name) < below;
    return count;
}

std::size_t resident_kib(pid_t pid)
{
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("VmRSS:", 0) == 0)
            return std::stoul(line.substr(6));
    }
    return 0;
}

namespace {

// Connections `server` has accepted and not closed: its socket descriptors
// that /proc/PID/net/unix shows bound to a path (an accepted socket carries
// its listener's) without the listening flag.
std::size_t accepted_connections(pid_t server)
{
    const std::string proc = "/proc/" + std::to_string(server);
    std::set<unsigned long> sockets;
    for (const auto& name : files_in(proc + "/fd")) {
        std::error_code error;
        auto target = std::filesystem::read_symlink(proc + "/fd/" + name, error).string();
        if (!error && target.rfind("socket:[", 0) == 0)
            sockets.insert(std::stoul(target.substr(8)));
    }
    constexpr unsigned long listening_flag = 0x10000; // __SO_ACCEPTCON
    std::ifstream table(proc + "/net/unix");
    std::string line;
    std::getline(table, line); // "Num RefCount Protocol Flags Type St Inode Path"
    std::size_t count = 0;
    while (std::getline(table, line)) {
        std::istringstream fields(line);
        std::string number, references, protocol, flags, type, state, path;
        unsigned long inode = 0;
        if (!(fields >> number >> references >> protocol >> flags >> type >> state >> inode >> path))
            continue; // no path: neither a listener nor accepted from one
        count += sockets.count(inode) && !(std::stoul(flags, nullptr, 16) & listening_flag);
    }
    return count;
}

} // namespace

std::size_t wait_for_connections(pid_t server, std::size_t count, std::chrono::milliseconds timeout)
{
    const auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
    for (;;) {
        const auto held = accepted_connections(server);
        if (held == count || std::chrono::steady_clock::now() > deadline)
            return held;
        std::this_thread::sleep_for(1ms);
    }
}

void expect_no_zombie(pid_t parent)
{
    for (const auto& child : children_of(parent))
        EXPECT_NE(child.state, 'Z') << "zombie child " << child.pid << " (" << child.cmdline << ")";
}

std::size_t send_until_blocked(int fd, std::string_view bytes, std::size_t at_most)
{
    std::size_t sent = 0;
    while (sent < at_most) {
        const std::size_t at = sent % bytes.size();
        const std::size_t size = std::min(bytes.size() - at, at_most - sent);
        auto n = ::send(fd, bytes.data() + at, size, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n <= 0)
            break;
        sent += static_cast<std::size_t>(n);
    }
    return sent;
}

bool wait_peer_closed(int fd, std::chrono::milliseconds timeout)
{
    return (poll_one(fd, POLLRDHUP, timeout) & (POLLRDHUP | POLLHUP)) != 0;
}

std::string exchange_raw(const std::string& socket_path, const std::string& bytes, std::chrono::milliseconds timeout)
{
    return exchange_raw_reply(socket_path, bytes, timeout).bytes;
}

RawReply exchange_raw_reply(const std::string& socket_path, const std::string& bytes, std::chrono::milliseconds timeout)
{
    auto client = Client::connect(socket_path);
    // Sends only as much as the socket takes without blocking, and reads
    // whatever arrives meanwhile: a server that stops reading must not wedge
    // the test.
    std::size_t sent = 0;
    RawReply reply;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    bool write_closed = false;
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd entry { client.fd(), POLLIN, 0 };
        if (!write_closed)
            entry.events |= POLLOUT;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (::poll(&entry, 1, static_cast<int>(std::max<long>(left.count(), 0))) <= 0)
            break;
        if (entry.revents & POLLOUT) {
            auto n = ::send(client.fd(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0)
                sent += static_cast<std::size_t>(n);
            if (n < 0 && errno != EAGAIN) {
                ::shutdown(client.fd(), SHUT_WR);
                write_closed = true;
            }
            if (sent == bytes.size() && !write_closed) {
                ::shutdown(client.fd(), SHUT_WR);
                write_closed = true;
            }
        }
        if (entry.revents & (POLLIN | POLLHUP | POLLERR)) {
            char buffer[65536];
            auto n = ::recv(client.fd(), buffer, sizeof buffer, MSG_DONTWAIT);
            if (n <= 0 && !(n < 0 && errno == EAGAIN)) {
                reply.closed = true;
                break;
            }
            if (n > 0)
                reply.bytes.append(buffer, static_cast<std::size_t>(n));
        }
    }
    return reply;
}

void set_receive_timeout(const Client& client, std::chrono::milliseconds timeout)
{
    timeval value { static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000) };
    ::setsockopt(client.fd(), SOL_SOCKET, SO_RCVTIMEO, &value, sizeof value);
}

RegistryDaemon::RegistryDaemon(std::vector<std::string> extra_arguments, std::optional<std::string> run_dir)
    : RegistryDaemon([&] {
        DaemonOptions options;
        options.arguments = std::move(extra_arguments);
        options.run_dir = std::move(run_dir);
        return options;
    }())
{
}

RegistryDaemon::RegistryDaemon(DaemonOptions options)
{
    if (options.run_dir) {
        run_dir_ = *options.run_dir;
    } else {
        own_directory_.emplace();
        run_dir_ = own_directory_->path();
    }
    log_path_ = run_dir_ + ".log";
    Pipe ready = make_pipe("registryd readiness");
    constexpr int notify_fd = 100;
    std::vector<std::string> arguments = options.wrapper;
    for (const auto& argument : { options.binary_dir + "/registryd", std::string("--run-dir"), run_dir_,
             std::string("--notify-fd"), std::to_string(notify_fd) })
        arguments.push_back(argument);
    if (options.debug_command)
        arguments.push_back("--enable-debug-command");
    arguments.insert(arguments.end(), options.arguments.begin(), options.arguments.end());
    auto c_arguments = c_strings(arguments);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, 2, 1);
    posix_spawn_file_actions_adddup2(&actions, ready.write_end.get(), notify_fd);
    std::vector<std::string> environment = options.environment;
    if (options.journal_stderr) {
        // The log file exists before the spawn, so its inode can be named.
        UniqueFd log_file(::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
        struct stat info {};
        if (!log_file || ::fstat(log_file.get(), &info) == -1)
            throw SystemError("unable to create", log_path_, errno);
        environment.push_back("JOURNAL_STREAM=" + std::to_string(info.st_dev) + ":" + std::to_string(info.st_ino));
    }
    auto environment_strings = environment_with(environment);
    auto c_environment = c_strings(environment_strings);
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    if (options.own_process_group) {
        posix_spawnattr_setpgroup(&attributes, 0);
        posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    }
    int error = ::posix_spawnp(&pid_, arguments[0].c_str(), &actions, &attributes, c_arguments.data(), c_environment.data());
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    if (error)
        throw SystemError("unable to spawn", arguments[0], error);
    pidfd_ = open_pidfd(pid_);
    ready.write_end.reset();
    if (!options.wait_until_listening)
        return;
    char byte = 0;
    if (!wait_readable(ready.read_end.get(), scaled(10s)) || ::read(ready.read_end.get(), &byte, 1) != 1) {
        ::kill(pid_, SIGKILL);
        wait_exit(pidfd_.get());
        pid_ = -1;
        throw std::runtime_error("registryd did not start; its log:\n" + log());
    }
    instance_ = instance_of(run_dir_);
}

RegistryDaemon::~RegistryDaemon()
{
    if (running()) {
        ::kill(pid_, SIGTERM);
        if (!wait_readable(pidfd_.get(), scaled(10s)))
            ::kill(pid_, SIGKILL);
        wait_exit(pidfd_.get());
    }
    // registryd's log holds its own stderr and every bucket's.
    keep_sanitizer_reports("registryd", log());
    if (!instance_.empty() && !leave_leftovers_) {
        for (const auto& name : segments_with_prefix(segment_prefix()))
            ::shm_unlink(("/" + name).c_str());
    }
    ::unlink(log_path_.c_str());
}

std::string RegistryDaemon::segment_prefix() const { return kv::segment_prefix(instance_); }

std::string RegistryDaemon::log() const
{
    std::ifstream file(log_path_);
    return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

Client RegistryDaemon::connect() const
{
    auto client = Client::connect(registry_socket_path(run_dir_));
    set_receive_timeout(client, scaled(20s));
    return client;
}

resp::Value RegistryDaemon::call(const std::vector<std::string>& request) const { return connect().call(request); }

resp::Value RegistryDaemon::create(const std::string& name) const
{
    auto reply = call({ "CREATE", name });
    if (reply.is_error())
        throw std::runtime_error("CREATE " + name + " failed: " + reply.text);
    return reply;
}

long long RegistryDaemon::monitors_of(const std::string& name) const
{
    for (const auto& bucket : call({ "LIST" }).elements) {
        if (bucket.field("name") && bucket.field("name")->text == name)
            return bucket.field("monitors") ? bucket.field("monitors")->integer : -1;
    }
    return -1;
}

Client RegistryDaemon::monitor(const std::string& name) const
{
    // LIST counts the MONITOR calls registered on each bucket: wait until
    // ours is counted, whatever order registryd serves connections in.
    const long long before = monitors_of(name);
    auto watcher = connect();
    watcher.send_raw(resp::encode_command({ "MONITOR", name }));
    auto deadline = std::chrono::steady_clock::now() + scaled(20s);
    while (monitors_of(name) <= before) {
        if (std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error("registryd did not register MONITOR " + name + " within " + std::to_string(scaled(20s).count()) + " ms");
    }
    return watcher;
}

ProcessExit RegistryDaemon::stop(int signal)
{
    kill_process(pid_, signal);
    if (!wait_readable(pidfd_.get(), scaled(20s)))
        throw std::runtime_error("registryd did not exit within " + std::to_string(scaled(20s).count()) + " ms of " + signal_text(signal));
    auto exit = wait_exit(pidfd_.get());
    pid_ = -1;
    return exit;
}

std::map<std::string, std::string> registry_info(Client& client)
{
    auto reply = client.call({ "INFO", "registry" });
    EXPECT_FALSE(reply.is_error()) << reply.text;
    EXPECT_EQ(reply.text.rfind("# Registry\r\n", 0), 0u) << reply.text;
    std::map<std::string, std::string> fields;
    std::size_t start = 0;
    while (start < reply.text.size()) {
        auto end = reply.text.find("\r\n", start);
        if (end == std::string::npos)
            end = reply.text.size();
        auto line = reply.text.substr(start, end - start);
        start = end + 2;
        auto colon = line.find(':');
        if (colon != std::string::npos && line[0] != '#')
            fields[line.substr(0, colon)] = line.substr(colon + 1);
    }
    return fields;
}

std::map<std::string, std::string> registry_info(const RegistryDaemon& daemon)
{
    auto client = daemon.connect();
    return registry_info(client);
}

std::string text_of(const resp::Value& reply, const char* field)
{
    std::string text;
    reply.text_field(field, text);
    return text;
}

long long pid_of(const resp::Value& reply)
{
    long long pid = -1;
    reply.integer_field("pid", pid);
    return pid;
}

std::string write_password_file(const TemporaryDirectory& directory, const std::string& name, const std::string& password, mode_t mode)
{
    const std::string path = directory.path() + "/" + name;
    std::ofstream(path) << password << "\n";
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
}

std::string write_script(const TemporaryDirectory& directory, const std::string& name, const std::string& body)
{
    std::string path = directory.path() + "/" + name;
    std::ofstream(path) << body;
    ::chmod(path.c_str(), 0700);
    return path;
}

} // namespace kv::test
