#include "session.h"

#include "command_table.h"

namespace kv {

void Transaction::clear()
{
    active = false;
    queued.clear();
    queued_bytes = 0;
    queued_command_malformed = false;
    watched_key_changed = false;
}

Session::Session(std::uint64_t id, int fd)
    : id_(id)
    , fd_(fd)
    , created_(Clock::now())
    , last_interaction_(created_)
{
}

namespace {

// Redis's container commands among those kv serves: their subcommand is
// part of the command's name.
bool is_container(std::string_view verb)
{
    // constexpr: an initializer list of string_views measured its literals
    // with strlen at every call, for every request (3% of a bucket's CPU).
    static constexpr std::string_view containers[] = { "client", "command", "config" };
    for (std::string_view container : containers) {
        if (same_word(verb, container))
            return true;
    }
    return false;
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

} // namespace

void Session::note_command(const resp::Request& request)
{
    last_command_size_ = 0;
    if (request.empty())
        return;
    auto copy = [this](std::string_view text) {
        for (char c : text) {
            if (last_command_size_ == last_command_.size())
                return;
            // CLIENT LIST splits on spaces and lines: a verb's other bytes show as '?'.
            last_command_[last_command_size_++] = (c < '!' || c > '~') ? '?' : lower(c);
        }
    };
    copy(request[0]);
    if (request.size() > 1 && is_container(request[0])) {
        copy("|");
        copy(request[1]);
    }
}

std::string_view Session::last_command() const
{
    if (last_command_size_ == 0)
        return "NULL";
    return std::string_view(last_command_.data(), last_command_size_);
}

void Session::reset()
{
    protocol = resp::Protocol::resp2;
    name.clear();
    db = 0;
    transaction.clear();
}

} // namespace kv
