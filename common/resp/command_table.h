// The one place where a request's verb and arity are checked, for every
// command table in kv (registryd's and bucketd's), as in Redis's command
// table: an entry is {NAME, arity, handler[, max_arity]}; a positive arity is
// exact, a negative one means "at least -arity", and max_arity, when set,
// caps a variable one; all count the verb itself.
#pragma once

#include <strings.h>

#include <string>
#include <string_view>

#include "log.h"
#include "error_code.h"
#include "resp.h"

namespace kv {

// One entry of a command table, for either daemon: `Handler` is the
// daemon's handler type.
template <typename Handler>
struct CommandEntry {
    std::string_view name;
    int arity;
    Handler run;
    int max_arity = 0;
};

// Verbs and subcommands compare without regard to case, as in Redis.
inline bool same_word(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// Finds the entry for request[0] (case-insensitive). If there is none, or the
// arity is wrong, appends the error reply to `out` and returns nullptr: the
// guide's catch-all clause, answered and forgotten.
template <typename Entry, std::size_t N>
const Entry* find_command(const Entry (&table)[N], const resp::Request& request, std::string& out)
{
    std::string_view verb = request.empty() ? std::string_view() : std::string_view(request[0]);
    for (const Entry& entry : table) {
        if (!same_word(entry.name, verb))
            continue;
        auto count = static_cast<long>(request.size());
        if ((entry.arity > 0 && count != entry.arity) || (entry.arity < 0 && count < -entry.arity)
            || (entry.max_arity > 0 && count > entry.max_arity)) {
            append_error(out, ErrorCode::error, "wrong number of arguments for '" + std::string(entry.name) + "' command");
            return nullptr;
        }
        return &entry;
    }
    std::string shown = request.empty() ? std::string() : printable(request[0].substr(0, 64));
    append_error(out, ErrorCode::error, "unknown command '" + shown + "'");
    return nullptr;
}

// PING [message], the same on every socket: +PONG, or the message back.
inline void answer_ping(const resp::Request& request, std::string& out)
{
    if (request.size() == 2)
        resp::append_bulk(out, request[1]);
    else
        resp::append_simple(out, "PONG");
}

} // namespace kv
