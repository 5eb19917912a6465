// The launch contracts between registryd and the programs it starts, in one
// place: what bucketd and textd are given when they start, and the one line
// each answers on its readiness pipe.
//
// A bucket's name is its one argument (so `ps` shows "bucketd <name>" and
// nothing else); everything else comes in its environment:
//   KV_INSTANCE      the registryd instance it belongs to: how a later
//                    registryd finds the buckets (and their descendants) of
//                    one that died (registryd/leftovers.h)
//   KV_SEGMENT_FD    an empty shared-memory object registryd created, to size and fill
//   KV_SEGMENT       its name (for messages)
//   KV_LISTEN_FD     a listening Unix socket registryd bound, to serve RESP on
//   KV_SOCKET        its path (for messages)
//   KV_NOTIFY_FD     the write end of its readiness pipe
//   KV_BUCKET_SIZE   the segment's size in bytes
//   KV_SERVER_CONFIG limits and access policy for the socket (ServerConfig::encode)
//   KV_DEBUG_COMMAND "1" to accept DEBUG SEGFAULT / DEBUG EXIT (tests)
//   KV_LOG_LEVEL     registryd's --log-level, which its buckets log at too
//   KV_WRITE_DEADLINE_NS  cluster mode: the fence's first deadline (TableHeader::write_deadline_ns); 0 or absent: none
//   KV_TCP_LISTEN_FD with --listen-tcp: a listening TCP socket registryd
//                    bound for this bucket, to serve RESP on as well (empty: none)
//   KV_TCP_ADDRESS   its address, "127.0.0.1:PORT" (for messages and INFO)
//   KV_PASSWORD_FD   with KV_TCP_LISTEN_FD: a descriptor to read the password
//                    TCP clients must AUTH with, from offset 0 to its end.
//                    The password itself is never in the environment nor
//                    in argv: /proc/PID/environ and cmdline show those.
// On its readiness pipe it writes, s6-style, "\n" once it serves, or one
// line saying why it could not start, and then exits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "log.h"
#include "server_config.h"

namespace kv {

inline constexpr const char* instance_environment_variable = "KV_INSTANCE";

struct BucketEnvironment {
    std::string instance;
    std::string segment_name;
    int segment_fd = -1;
    std::string socket_path;
    int listen_fd = -1;
    int notify_fd = -1;
    std::size_t bucket_size = 0;
    ServerConfig server_config;
    bool debug_command_enabled = false;
    LogLevel log_level = LogLevel::info;
    // KEEP: the segment holds the table of this bucket's previous process;
    // adopt it if it is intact (SharedTableWriter::KeepData) instead of
    // formatting an empty one.
    bool keep_data = false;
    std::int64_t write_deadline_ns = 0; // cluster mode's fence, set before the bucket serves
    // --listen-tcp: the bucket's TCP listener (-1: none), its address, and
    // where to read the password its TCP clients must give (AUTH).
    int tcp_listen_fd = -1;
    std::string tcp_address;
    int password_fd = -1;
};

// registryd's side: NAME=value pairs to add to the bucket's environment.
std::vector<std::pair<std::string, std::string>> encode(const BucketEnvironment& environment);

using EnvironmentLookup = std::function<const char*(const char*)>;
inline const EnvironmentLookup process_environment = [](const char* name) { return std::getenv(name); };

// bucketd's side, first: the readiness pipe (KV_NOTIFY_FD), which it takes
// before anything else so that any later failure is told to registryd.
// Throws as decode_bucket_environment does.
int decode_notify_descriptor(const EnvironmentLookup& lookup = process_environment);

// bucketd's side, through `lookup` (std::getenv by default). Throws
// std::invalid_argument with one line ("missing KV_SEGMENT_FD (started by
// registryd)", "KV_BUCKET_SIZE is not a number: x") on anything encode()
// would not have written.
BucketEnvironment decode_bucket_environment(const EnvironmentLookup& lookup = process_environment);

// textd, the guide's text server (textd/main.cpp), started with
// --text-listen. Its one argument is the address it serves (`ps` shows
// "textd 127.0.0.1:4040"); in its environment:
//   KV_INSTANCE      as a bucket's
//   KV_LISTEN_FD     the listening TCP socket registryd bound (registryd
//                    keeps it across restarts: clients queue meanwhile)
//   KV_NOTIFY_FD     its readiness pipe, as a bucket's
//   KV_RUN_DIR       the run directory, where it finds the registry's socket
//                    and the name table, as kvctl does
//   KV_SERVER_CONFIG the limits every socket of the instance enforces: its
//                    connections, line length (max_inline_length) and stall timeout
//   KV_LOG_LEVEL     as a bucket's
//   KV_PASSWORD_FD   with registryd --password-file: a descriptor to read
//                    the password from, as a bucket's, to AUTH with at the
//                    TCP address of a bucket on another node of the cluster
//                    (empty: none; textd then reaches only this node's buckets)
struct TextServerEnvironment {
    std::string instance;
    int listen_fd = -1;
    int notify_fd = -1;
    std::string run_dir;
    ServerConfig server_config;
    LogLevel log_level = LogLevel::info;
    int password_fd = -1;
};

std::vector<std::pair<std::string, std::string>> encode(const TextServerEnvironment& environment);
// Throws as decode_bucket_environment does.
TextServerEnvironment decode_text_server_environment(const EnvironmentLookup& lookup = process_environment);

// The readiness line.
inline constexpr std::string_view ready_line = "\n";
// "why" as one failure line: newline-terminated, never empty, no other
// line break inside, and short enough for the reader below.
std::string failure_line(std::string_view why);

inline constexpr std::size_t longest_readiness_line = 512;

enum class Readiness {
    waiting, // nothing complete yet
    ready,   // "\n"
    failed,  // a line saying why (in `why`, made printable)
    closed,  // the pipe ended without a line
};
// What `text` (everything read from the pipe so far; `at_end` once the pipe
// is at EOF) says. A line longer than longest_readiness_line counts as a
// failure with what arrived.
Readiness parse_readiness(std::string_view text, bool at_end, std::string& why);
// Reads what a child wrote on its readiness pipe `fd` (non-blocking) so
// far, without blocking, into `text` (all of it so far), and says what that
// means: registryd's side, for bucketd and textd alike.
Readiness read_readiness(int fd, std::string& text, std::string& why);

} // namespace kv
