// Test support for black-box tests: a real registryd in its own temporary
// run dir, started as a child of the test and watched through a pidfd.
// Nothing here sleeps to synchronise: it waits on the readiness pipe, on
// replies and on pidfds, each with a deadline so a bug fails instead of hanging.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "client.h"
#include "require.h"
#include "name_table.h"
#include "resp.h"
#include "unique_fd.h"

namespace kv::test {

using namespace std::chrono_literals;

std::string binary(const std::string& name); // path of a program built with the tests
// argv or envp for exec: pointers into `strings`, then a null.
std::vector<char*> c_strings(std::vector<std::string>& strings);

// A deadline of the tests, stretched by KV_TEST_TIME_SCALE (a whole number,
// 1 when unset), which the sanitizer pass sets (./kv sanitize): under ASan a
// loaded 2-core machine is several times slower, and a deadline there is a
// bound on a hang, not a claim about speed. Claims about speed (a stall
// timeout that must fire "soon") are not scaled.
std::chrono::milliseconds scaled(std::chrono::milliseconds deadline);

// In a sanitizer build, g++ 12's UBSan writes its reports to stderr, whatever
// log_path says (ASan and LSan honour it). A process's stderr that holds one
// ("runtime error:") is copied into $KV_SANITIZER_REPORTS, which ./kv sanitize
// checks after the run, so that a bucket's report in registryd's log, or
// kvctl's in captured output, fails the run even if the test passed.
void keep_sanitizer_reports(const std::string& what, const std::string& output);

struct ProcessExit {
    int code = 0;   // CLD_EXITED, CLD_KILLED, CLD_DUMPED
    int status = 0; // exit status or signal
};

struct ProgramResult {
    int exit_code = -1;
    std::string out;
    std::string err;
};

// Runs a program to completion with extra environment entries; output
// captured; stdin is `stdin_file` (nothing, by default).
ProgramResult run_program(const std::vector<std::string>& argv, const std::vector<std::string>& environment = {},
    const std::string& stdin_file = "/dev/null");

// A fresh directory under /tmp (short, for socket paths), removed with its contents.
class TemporaryDirectory {
public:
    TemporaryDirectory();
    ~TemporaryDirectory();
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// True once the process behind `pidfd` has exited (any process, not only
// children), false if `timeout` passed first.
bool wait_readable(int fd, std::chrono::milliseconds timeout);
UniqueFd open_pidfd(pid_t pid);

// "SIGHUP", as registryd names signals in its log.
std::string signal_text(int signal);

// kill(2) that refuses pids under 2: a bug that yields 0 or -1 must not
// signal the test's process group or every process on the machine.
int kill_process(long long pid, int signal);

// Every process whose parent is `parent`, with its state letter from /proc.
struct ChildProcess {
    pid_t pid;
    char state;
    std::string cmdline; // arguments joined by spaces
};
std::vector<ChildProcess> children_of(pid_t parent);

// Entries in /dev/shm whose name starts with `prefix` (given with its '/').
std::vector<std::string> segments_with_prefix(const std::string& prefix);
// The instance id the registryd on `run_dir` published in its lock file
// (empty if none is published: no registryd, or one that stopped cleanly).
std::string instance_of(const std::string& run_dir);
// The name table of the registryd on `run_dir`, found and trusted as kvctl
// finds and trusts it; empty if it cannot be.
std::unique_ptr<NameTableReader> open_name_table(const std::string& run_dir);
// The bucket segments of the registryd on `run_dir` (not its name table).
std::vector<std::string> bucket_segments(const std::string& run_dir);
std::vector<std::string> files_in(const std::string& directory);
// A Unix socket file at `path`, bound and closed: what a killed server leaves.
void make_socket_file(const std::string& path);
// Open descriptors of `pid`; with `below`, only those numbered under it
// (what counts against an RLIMIT_NOFILE of that value).
std::size_t open_descriptor_count(pid_t pid, int below = 1 << 30);
std::size_t resident_kib(pid_t pid); // VmRSS

// Waits until process `server` holds exactly `count` connections it has
// accepted (on any of its listening sockets), and returns how many it held
// when it last looked: `count`, or what it still held when `timeout` passed.
//
// This is how a test knows that a server has handled what its clients did:
// a connection counts from the moment the server accepts it, and one whose
// client hung up stops counting only when the server closes its side, that
// is, once it has handled the hang-up. The count is read from the server's
// own descriptors (/proc/PID/fd matched against /proc/PID/net/unix, where an
// accepted socket carries its listener's path and a listener is flagged as
// one), so it does not depend on the order in which the server handles its
// events, as a round trip on some other connection would. A client the
// server refused counts until it hangs up (the server drains it first).
//
// Once it returns `count`, a descriptor count of the server holds those
// connections and whatever the server keeps for itself: registryd releases
// a bucket's descriptors before it replies to the STOP or MONITOR that
// reports the bucket's exit. It polls /proc every millisecond.
std::size_t wait_for_connections(pid_t server, std::size_t count, std::chrono::milliseconds timeout = 20s);

// Fails the test (EXPECT) for every child of `parent` that is a zombie:
// exited, and not reaped.
void expect_no_zombie(pid_t parent);

// Writes `bytes` over and over (each time from where the last write stopped)
// without blocking, until the socket takes no more or `at_most` bytes went:
// how a client that floods a server finds where the server stops reading.
// Returns how many bytes went.
std::size_t send_until_blocked(int fd, std::string_view bytes, std::size_t at_most);

// True once the peer has closed the connection (POLLRDHUP), even with unread data.
bool wait_peer_closed(int fd, std::chrono::milliseconds timeout);

// Sends bytes, half-closes, and reads everything the server says until it
// closes or `timeout` passes. For malformed input, where no reply can be parsed.
std::string exchange_raw(const std::string& socket_path, const std::string& bytes, std::chrono::milliseconds timeout = 10s);
// The same, saying also whether it ended because the server closed the
// connection (or reset it), rather than because `timeout` passed.
struct RawReply {
    std::string bytes;
    bool closed = false;
};
RawReply exchange_raw_reply(const std::string& socket_path, const std::string& bytes, std::chrono::milliseconds timeout = 10s);

// A second user on this machine: nobody (uid 65534), through setpriv (needs
// root, and setpriv on PATH: see missing()), with copies of kv's programs it
// can surely execute.
class SecondUser {
public:
    static constexpr uid_t uid = 65534;
    SecondUser(); // copies registryd, bucketd and kvctl into a directory of mode 0755

    // "" if this environment can act as a second user, else what it lacks:
    // for KV_REQUIRE(SecondUser::missing().empty(), SecondUser::missing()).
    static std::string missing();

    // setpriv --reuid=65534 --regid=65534, with `groups` ("4242") or none.
    std::vector<std::string> wrapper(const std::string& groups = "") const;
    ProgramResult run(const std::vector<std::string>& command, const std::string& groups = "") const;
    std::string program(const std::string& name) const { return programs_.path() + "/" + name; }
    const std::string& programs() const { return programs_.path(); }

private:
    TemporaryDirectory programs_;
};

struct DaemonOptions {
    std::vector<std::string> arguments;   // extra registryd arguments
    std::optional<std::string> run_dir;   // reuse this directory instead of a new one
    std::vector<std::string> wrapper;     // run through this (prlimit, setpriv, unshare ...), which must exec
    bool debug_command = true;            // pass --enable-debug-command
    std::string binary_dir = KV_BIN_DIR;  // where registryd (and so bucketd) are
    std::vector<std::string> environment; // extra NAME=value entries (NOTIFY_SOCKET, WATCHDOG_USEC ...)
    bool own_process_group = false;       // setpgid(0, 0) in the child, as a shell does for a foreground job
    bool journal_stderr = false;          // JOURNAL_STREAM names its stderr (the log file), as systemd sets it
    bool wait_until_listening = true;     // false: return once it is spawned (a test then waits its own way)
};

class RegistryDaemon {
public:
    // Starts registryd --run-dir <temp> --enable-debug-command <extra...> and
    // waits until it listens. `run_dir` reuses a directory instead of a new one.
    explicit RegistryDaemon(std::vector<std::string> extra_arguments = {}, std::optional<std::string> run_dir = {});
    explicit RegistryDaemon(DaemonOptions options);
    ~RegistryDaemon();

    const std::string& run_dir() const { return run_dir_; }
    pid_t pid() const { return pid_; }
    // Its instance id, read once it listened (it stays known after it exits).
    const std::string& instance() const { return instance_; }
    // What it names in /dev/shm: "/kv.<instance>." (its name table included).
    std::string segment_prefix() const;
    std::string log() const;

    // One call on a new connection to the registry socket.
    resp::Value call(const std::vector<std::string>& request) const;
    Client connect() const;
    // CREATE, asserting success; returns the bucket's reply (name, pid, id, socket).
    resp::Value create(const std::string& name) const;
    // A connection with MONITOR `name` registered: its reply comes when the
    // bucket exits. Returns only once registryd has read the MONITOR, so a
    // kill that follows is sure to be reported on it.
    Client monitor(const std::string& name) const;
    // The MONITOR calls registered on bucket `name` (LIST's "monitors"), -1 if there is no such bucket.
    long long monitors_of(const std::string& name) const;

    // The destructor removes whatever segments of its instance are left (a
    // test that SIGKILLs registryd would leak them); this keeps them, for a
    // test of what a later registryd does with them.
    void leave_leftovers() { leave_leftovers_ = true; }

    // SIGTERM (or another signal) and wait for the exit.
    ProcessExit stop(int signal = SIGTERM);
    bool running() const { return pid_ > 0; }

private:
    std::optional<TemporaryDirectory> own_directory_;
    std::string run_dir_;
    std::string log_path_;
    std::string instance_;
    bool leave_leftovers_ = false;
    pid_t pid_ = -1;
    UniqueFd pidfd_;
};

// Sets a receive timeout so a test waiting on a reply fails instead of hanging.
void set_receive_timeout(const Client& client, std::chrono::milliseconds timeout);

// INFO's registry section as field -> value ("buckets" -> "3"), asked on
// `client` (a connection to registryd) or on a new connection to `daemon`.
std::map<std::string, std::string> registry_info(Client& client);
std::map<std::string, std::string> registry_info(const RegistryDaemon& daemon);

// A bucket record's fields (CREATE, LOOKUP, LIST entries), RESP2 or RESP3:
// the text of `field` ("" without it), and the pid (-1 without one).
std::string text_of(const resp::Value& reply, const char* field);
long long pid_of(const resp::Value& reply);

// A password file as registryd and kvctl accept it (--password-file): the
// password and a newline in `directory`/`name`, ours, with `mode`.
std::string write_password_file(const TemporaryDirectory& directory, const std::string& name, const std::string& password,
    mode_t mode = 0600);

// An executable script (mode 0700) `name` in `directory` holding `body`: a
// stand-in program (a bucketd that misbehaves, say). Returns its path.
std::string write_script(const TemporaryDirectory& directory, const std::string& name, const std::string& body);

} // namespace kv::test
