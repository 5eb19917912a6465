// Error codes: every error reply kv sends starts with one code word that says
// what kind of failure it is, as Redis's do (ERR, WRONGTYPE, ...). The word on
// the wire, its meaning and the exit code kvctl turns it into live here, and
// only here.
#pragma once

#include <string>
#include <string_view>

namespace kv {

enum class ErrorCode {
    not_found, // NOTFOUND: no bucket of that name
    invalid,   // INVALID: the bucket name is not valid
    limit,     // LIMIT: --max-buckets reached
    full,      // FULL: the bucket's segment has no room for this SET
    denied,    // DENIED: the peer's uid/gid (SO_PEERCRED) is not allowed
    busy,      // BUSY: the bucket is stopping, or registryd is shutting down
    cluster_down, // CLUSTERDOWN: cluster mode, and the name cannot be claimed (etcd unreachable, lease lost)
    error,     // ERR: anything else (unknown verb, wrong arity, a bucket that could not start)
};

std::string_view wire_word(ErrorCode code);
// The code of an error reply's text ("NOTFOUND no bucket named x"); a word
// kv does not send (Redis's own, say) is `error`.
ErrorCode error_code_of(std::string_view error_text);
// The text after the code word ("no bucket named x").
std::string_view error_message(std::string_view error_text);
// kvctl's exit code for a reply with this code (README "Exit codes").
int kvctl_exit_code(ErrorCode code);

// "WORD message", the text of an error reply.
std::string error_text(ErrorCode code, std::string_view message);
// Appends the error reply "-WORD message\r\n" (one line: line breaks in
// `message` are replaced).
void append_error(std::string& out, ErrorCode code, std::string_view message);

} // namespace kv
