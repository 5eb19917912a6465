// The one place where a request's verb and arity are checked, for every
// command table in kv (registryd's, bucketd's and the connection commands
// every socket serves), as in Redis's command table: an entry is
// {NAME, arity, handler[, max_arity[, doc]]}; a positive arity is exact, a
// negative one means "at least -arity", and max_arity, when set, caps a
// variable one; all count the verb itself. `doc` is what COMMAND INFO and
// COMMAND DOCS tell clients about it, so those replies come from the same
// tables that dispatch, never from a second list.
#pragma once

#include <charconv>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "log.h"
#include "error_code.h"
#include "resp.h"

namespace kv {

// A subcommand of a daemon's container command (MEMORY USAGE): its name and
// arity, counting the command and the subcommand, as Redis's do. Inside MULTI
// they are checked before the request is queued, as Redis checks them.
struct SubcommandArity {
    std::string_view name;
    int arity;
};

// What COMMAND INFO and COMMAND DOCS say of a command, in Redis 7.0's terms
// (src/commands/*.json): flags and ACL categories are space-separated words
// ("readonly fast", "@read @string @fast"); first_key, last_key and step
// locate its keys among the arguments (0 0 0: it takes none).
struct CommandDoc {
    std::string_view flags;
    int first_key = 0;
    int last_key = 0;
    int step = 0;
    std::string_view summary;
    std::string_view group; // Redis's group: "string", "keyspace", "connection", "server", "transactions"
    std::string_view categories;
    std::string_view since = "1.0.0"; // the Redis version that introduced it
    std::span<const SubcommandArity> subcommands = {}; // a container command's (none: not one)
};

// One entry of a command table, for either daemon: `Handler` is the
// daemon's handler type.
template <typename Handler>
struct CommandEntry {
    std::string_view name;
    int arity;
    Handler run;
    int max_arity = 0;
    CommandDoc doc = {};
};

// An entry without its handler: what the connection commands (COMMAND, the
// checks inside MULTI) need to know of a daemon's table.
struct CommandInfo {
    std::string_view name;
    int arity;
    int max_arity;
    CommandDoc doc;
};

template <typename Entry, std::size_t N>
std::vector<CommandInfo> describe_commands(const Entry (&table)[N])
{
    std::vector<CommandInfo> out;
    for (const Entry& entry : table)
        out.push_back(CommandInfo { entry.name, entry.arity, entry.max_arity, entry.doc });
    return out;
}

// Whether `count` arguments (the verb included) suit an entry's arity.
inline bool arity_accepts(int arity, int max_arity, std::size_t count)
{
    const auto n = static_cast<long>(count);
    return !((arity > 0 && n != arity) || (arity < 0 && n < -arity) || (max_arity > 0 && n > max_arity));
}

// Verbs and subcommands compare without regard to case, as in Redis.
inline bool same_word(std::string_view a, std::string_view b)
{
    // strncasecmp in the C locale, inline: a call per table entry of the
    // verb's length was 8% of a bucket's user time on pipelined INCRs.
    // Two bytes differing only in 0x20 are the same letter in two cases only
    // if they are letters.
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
        if (x == y)
            continue;
        const unsigned char lower = x | 0x20;
        if ((x ^ y) != 0x20 || lower < 'a' || lower > 'z')
            return false;
    }
    return true;
}

// Redis 7's error texts for a request no table entry takes, word for word, so
// client libraries map them as they map Redis's (server.c, processCommand).
// A verb is named as the table names it, in lower case; an unknown one as it
// came, followed by up to 128 bytes of its arguments. As Redis's printf does,
// each piece ends at a NUL, and CR and LF become spaces (an error reply is
// one line).
inline std::string redis_error_piece(std::string_view text, std::size_t at_most = std::string_view::npos)
{
    std::string piece(text.substr(0, std::min(text.find('\0'), at_most)));
    for (char& c : piece) {
        if (c == '\r' || c == '\n')
            c = ' ';
    }
    return piece;
}

// Redis's strict integer parse (resp.h), for every argument that must be a
// long long.
using resp::parse_long_long;

// A command's name as Redis writes it in its messages.
inline std::string lower_case(std::string_view name)
{
    std::string lower(name);
    for (char& c : lower)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return lower;
}

inline std::string wrong_arity_text(std::string_view name)
{
    return "wrong number of arguments for '" + lower_case(name) + "' command";
}

inline std::string unknown_command_text(const resp::Request& request)
{
    std::string arguments;
    for (std::size_t i = 1; i < request.size() && arguments.size() < 128; ++i)
        arguments += "'" + redis_error_piece(request[i], 128 - arguments.size()) + "' ";
    return "unknown command '" + redis_error_piece(request.empty() ? std::string_view() : std::string_view(request[0]), 128)
        + "', with args beginning with: " + arguments;
}

// A command table's names in a small open-addressed hash, built at its first
// use, so that a verb is found with one compare or two, as Redis finds it in
// its command dict. Walking the table, a compare per entry, was 8% of a
// bucket's user time on pipelined INCRs (perf), and walking the connection
// commands before it 5% more. `Table` is the table itself (an array of
// entries with a `name`), so each table has its own index.
template <const auto& Table>
class VerbIndex {
public:
    using Entry = std::remove_reference_t<decltype(Table[0])>;

    // The entry named `verb`, as same_word compares (the first such entry,
    // as a walk of the table would find), or nullptr.
    static Entry* find(std::string_view verb)
    {
        static const std::array<std::uint8_t, slot_count> slots = build();
        for (std::size_t at = hash(verb) & mask;; at = (at + 1) & mask) {
            const std::uint8_t slot = slots[at];
            if (slot == 0)
                return nullptr;
            if (same_word(Table[slot - 1].name, verb))
                return &Table[slot - 1];
        }
    }

private:
    static constexpr std::size_t entry_count = std::size(Table);
    static_assert(entry_count < 255, "a slot holds an entry's index plus one in a byte");
    static constexpr std::size_t slot_count = std::bit_ceil(2 * entry_count); // at most half full: short probes
    static constexpr std::size_t mask = slot_count - 1;

    // Folds case as same_word does: a letter's two cases differ only in 0x20.
    // Two words same_word calls equal hash alike; the converse is checked.
    static std::size_t hash(std::string_view word)
    {
        std::size_t h = word.size();
        for (char c : word)
            h = h * 31 + (static_cast<unsigned char>(c) | 0x20u);
        return h;
    }

    static std::array<std::uint8_t, slot_count> build()
    {
        std::array<std::uint8_t, slot_count> slots {};
        for (std::size_t i = 0; i < entry_count; ++i) {
            std::size_t at = hash(Table[i].name) & mask;
            while (slots[at] != 0 && !same_word(Table[slots[at] - 1].name, Table[i].name))
                at = (at + 1) & mask;
            if (slots[at] == 0)
                slots[at] = static_cast<std::uint8_t>(i + 1);
        }
        return slots;
    }
};

// Finds the entry of `Table` for request[0] (case-insensitive). If there is
// none, or the arity is wrong, appends the error reply to `out` and returns
// nullptr: the guide's catch-all clause, answered and forgotten.
template <const auto& Table>
auto* find_command(const resp::Request& request, std::string& out)
{
    const std::string_view verb = request.empty() ? std::string_view() : std::string_view(request[0]);
    auto* entry = VerbIndex<Table>::find(verb);
    if (!entry) {
        append_error(out, ErrorCode::error, unknown_command_text(request));
        return entry;
    }
    if (!arity_accepts(entry->arity, entry->max_arity, request.size())) {
        append_error(out, ErrorCode::error, wrong_arity_text(entry->name));
        return decltype(entry)(nullptr);
    }
    return entry;
}

// Finds request[1] (request[0] is a container command) among `subcommands`.
// If there is none, or its arity is wrong, appends Redis's error
// (processCommand's: "unknown subcommand 'X'. Try MEMORY HELP.", or the
// arity error naming "memory|usage") and returns nullptr.
inline const SubcommandArity* find_subcommand(std::span<const SubcommandArity> subcommands, const resp::Request& request,
    std::string& out)
{
    std::string container(request[0]);
    for (char& c : container)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const SubcommandArity& subcommand : subcommands) {
        if (!same_word(subcommand.name, request[1]))
            continue;
        if (!arity_accepts(subcommand.arity, 0, request.size())) {
            append_error(out, ErrorCode::error, wrong_arity_text(container + "|" + std::string(subcommand.name)));
            return nullptr;
        }
        return &subcommand;
    }
    for (char& c : container)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    append_error(out, ErrorCode::error, "unknown subcommand '" + redis_error_piece(request[1], 128) + "'. Try " + container + " HELP.");
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
