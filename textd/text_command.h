// The guide's text protocol (KVServer.Command), byte for byte: parsing a
// line into a command, and the replies. Pure functions, tested without a
// socket (tests/text_command_test.cpp runs the guide's own examples).
//
//   CREATE bucket            -> OK
//   PUT bucket key value     -> OK
//   GET bucket key           -> value, then OK (an empty line, then OK, for a missing key)
//   DELETE bucket key        -> OK
//   GET/PUT/DELETE on a bucket that does not exist -> NOT FOUND
//   anything else (unknown verb, wrong number of words, empty line) -> UNKNOWN COMMAND
//   a CREATE that fails      -> ERROR, and the connection closes
// Every reply line ends in "\r\n"; verbs are case-sensitive, as the guide's
// pattern match is.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kv::text {

enum class Verb { create, get, put, del };

struct Command {
    Verb verb = Verb::create;
    std::string_view bucket;
    std::string_view key;   // GET, PUT, DELETE
    std::string_view value; // PUT
};

// Elixir's String.split/1, which the guide's parse/1 splits a line with:
// words between runs of Unicode whitespace (ASCII's \t \n \v \f \r and
// space, U+0085, U+1680, U+2000-2006, U+2008-200A, U+2028, U+2029, U+205F,
// U+3000), leading and trailing runs ignored; no-break spaces (U+00A0,
// U+2007, U+202F) do not divide. The words point into `line`.
std::vector<std::string_view> split_words(std::string_view line);

// The guide's parse/1: the command a line (its "\r\n" included or not)
// asks for, or nothing for UNKNOWN COMMAND. The views point into `line`.
std::optional<Command> parse(std::string_view line);

inline constexpr std::string_view ok_reply = "OK\r\n";
inline constexpr std::string_view not_found_reply = "NOT FOUND\r\n";
inline constexpr std::string_view unknown_command_reply = "UNKNOWN COMMAND\r\n";
inline constexpr std::string_view error_reply = "ERROR\r\n";
// GET's reply: the value (empty for a missing key) on a line, then OK.
std::string get_reply(std::string_view value);

} // namespace kv::text
