#include "text_connection.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "log.h"
#include "text_command.h"

namespace kv::text {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t read_chunk = 16 * 1024;
// An idle client's process closes its bucket sockets and unmaps their
// segments after this long, so that an idle client neither pins the
// segment of a bucket that was stopped nor holds one of a bucket's
// --max-connections.
constexpr int idle_release_ms = 1000;

// Waits until `fd` is ready for `events`; false if `timeout_ms` (-1: none)
// passed first or polling failed.
bool wait_for(int fd, short events, int timeout_ms)
{
    pollfd watched { fd, events, 0 };
    for (;;) {
        const int ready = ::poll(&watched, 1, timeout_ms);
        if (ready == -1 && errno == EINTR)
            continue;
        return ready == 1;
    }
}

int remaining_ms(Clock::time_point deadline)
{
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return left <= 0 ? 0 : static_cast<int>(left);
}

// Writes all of `bytes`; false if the client hung up or read nothing of it
// for a whole stall timeout.
bool write_all(int fd, std::string_view bytes, std::chrono::milliseconds stall_timeout)
{
    auto deadline = Clock::now() + stall_timeout;
    while (!bytes.empty()) {
        const ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (sent > 0) {
            bytes.remove_prefix(static_cast<std::size_t>(sent));
            deadline = Clock::now() + stall_timeout; // progress
            continue;
        }
        if (sent == -1 && errno == EINTR)
            continue;
        if (sent == -1 && (errno == EAGAIN || errno == EWOULDBLOCK) && wait_for(fd, POLLOUT, remaining_ms(deadline)))
            continue;
        return false;
    }
    return true;
}

struct Answer {
    std::string reply;
    bool close = false; // the guide's error clause: ERROR, then the connection ends
};

Answer run(std::string_view line, BucketAccess& buckets, const std::string& peer)
{
    const auto command = parse(line);
    if (!command)
        return { std::string(unknown_command_reply) };
    std::string why;
    std::string value;
    Outcome outcome = Outcome::failed;
    switch (command->verb) {
    case Verb::create: outcome = buckets.create(command->bucket, why); break;
    case Verb::get: outcome = buckets.get(command->bucket, command->key, value, why); break;
    case Verb::put: outcome = buckets.put(command->bucket, command->key, command->value, why); break;
    case Verb::del: outcome = buckets.del(command->bucket, command->key, why); break;
    }
    switch (outcome) {
    case Outcome::done: return { command->verb == Verb::get ? get_reply(value) : std::string(ok_reply) };
    case Outcome::not_found: return { std::string(not_found_reply) };
    case Outcome::failed: break;
    }
    peer_event_log().log(LogLevel::info, "client " + peer + ": " + why + "; replied ERROR and closed the connection");
    return { std::string(error_reply), true };
}

} // namespace

void serve_connection(int fd, const std::string& peer, BucketAccess& buckets, const ConnectionLimits& limits)
{
    std::string input;
    std::size_t scanned = 0; // input[0, scanned) holds no newline
    Clock::time_point stalled_at {};
    // A line over the limit, with or without its end seen yet: ERROR, then close.
    auto refuse_long_line = [&] {
        peer_event_log().log(LogLevel::info, "client " + peer + ": a line longer than " + std::to_string(limits.max_line)
                + " bytes; replied ERROR and closed the connection");
        write_all(fd, error_reply, limits.stall_timeout);
    };
    for (;;) {
        const auto newline = input.find('\n', scanned);
        if (newline == std::string::npos) {
            // Over the limit already, whatever comes next (a last "\r" may
            // still be the line's ending).
            if (input.size() > limits.max_line + 1 || (input.size() == limits.max_line + 1 && input.back() != '\r')) {
                return refuse_long_line();
            }
            scanned = input.size();
            // Idle (nothing pending) waits as long as it takes, letting go
            // of the buckets it holds after a second; half a line must make
            // progress within the stall timeout.
            if (!input.empty() && stalled_at == Clock::time_point {})
                stalled_at = Clock::now() + limits.stall_timeout;
            const int timeout = !input.empty() ? remaining_ms(stalled_at) : buckets.holds_any() ? idle_release_ms : -1;
            if (!wait_for(fd, POLLIN, timeout)) {
                if (input.empty()) {
                    buckets.forget();
                    continue;
                }
                peer_event_log().log(LogLevel::info, "client " + peer + ": no end of line for " + std::to_string(limits.stall_timeout.count())
                        + " ms; closed the connection");
                return;
            }
            char chunk[read_chunk];
            const ssize_t got = ::read(fd, chunk, sizeof chunk);
            if (got == 0)
                return; // hung up
            if (got == -1) {
                if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                    continue;
                if (errno != ECONNRESET)
                    peer_event_log().log(LogLevel::info, "client " + peer + ": unable to read: " + std::strerror(errno));
                return;
            }
            input.append(chunk, static_cast<std::size_t>(got));
            stalled_at = Clock::now() + limits.stall_timeout; // progress
            continue;
        }
        const std::size_t length = newline > 0 && input[newline - 1] == '\r' ? newline - 1 : newline; // its ending not counted
        if (length > limits.max_line) {
            return refuse_long_line();
        }
        Answer answer = run(std::string_view(input).substr(0, newline + 1), buckets, peer);
        input.erase(0, newline + 1);
        scanned = 0;
        stalled_at = input.empty() ? Clock::time_point {} : Clock::now() + limits.stall_timeout;
        if (!write_all(fd, answer.reply, limits.stall_timeout)) {
            peer_event_log().log(LogLevel::info, "client " + peer + ": did not read its replies for " + std::to_string(limits.stall_timeout.count())
                    + " ms, or hung up; closed the connection");
            return;
        }
        if (answer.close)
            return;
    }
}

} // namespace kv::text
