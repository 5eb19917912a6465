#include "error_code.h"

#include "resp.h"

namespace kv {

namespace {

struct ErrorCodeEntry {
    ErrorCode code;
    std::string_view word;
    int kvctl_exit; // 1 not found, 4 refused, 5 failed
};

constexpr ErrorCodeEntry entries[] = {
    { ErrorCode::not_found, "NOTFOUND", 1 },
    { ErrorCode::invalid, "INVALID", 4 },
    { ErrorCode::limit, "LIMIT", 4 },
    { ErrorCode::full, "FULL", 4 },
    { ErrorCode::denied, "DENIED", 4 },
    { ErrorCode::busy, "BUSY", 5 },
    { ErrorCode::cluster_down, "CLUSTERDOWN", 5 },
    { ErrorCode::error, "ERR", 5 },
};

const ErrorCodeEntry& entry_of(ErrorCode code)
{
    for (const auto& entry : entries) {
        if (entry.code == code)
            return entry;
    }
    return entries[std::size(entries) - 1];
}

} // namespace

std::string_view wire_word(ErrorCode code) { return entry_of(code).word; }

int kvctl_exit_code(ErrorCode code) { return entry_of(code).kvctl_exit; }

ErrorCode error_code_of(std::string_view error_text)
{
    const std::string_view word = error_text.substr(0, error_text.find(' '));
    for (const auto& entry : entries) {
        if (entry.word == word)
            return entry.code;
    }
    return ErrorCode::error;
}

std::string_view error_message(std::string_view error_text)
{
    const auto space = error_text.find(' ');
    return space == std::string_view::npos ? error_text : error_text.substr(space + 1);
}

std::string error_text(ErrorCode code, std::string_view message)
{
    std::string text(wire_word(code));
    text += ' ';
    text += message;
    return text;
}

void append_error(std::string& out, ErrorCode code, std::string_view message)
{
    resp::append_error(out, error_text(code, message));
}

} // namespace kv
