// One line per event on stderr, with a time and a level:
//   2026-11-27T18:16:07.123Z warning registryd[4200]: bucket shopping (pid 4242) killed by SIGKILL
// or, when stderr is the systemd journal (JOURNAL_STREAM names it), with the
// sd-daemon priority prefix instead of the time, which the journal adds itself:
//   <4>registryd[4200]: bucket shopping (pid 4242) killed by SIGKILL
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace kv {

// syslog's severities that kv uses, most severe first: a level shows itself
// and everything above it.
enum class LogLevel {
    error,   // something failed that an operator must look at
    warning, // a bucket died, a client was refused or dropped
    notice,  // start, stop, signals: the daemon's own life
    info,    // buckets starting, ready, stopping, exiting (the default level)
    debug,   // everything else
};

std::string_view to_string(LogLevel level);
// "error", "warning", "notice", "info", "debug"; nullopt for anything else.
std::optional<LogLevel> parse_log_level(std::string_view text);
// The sd-daemon prefix digit: 3 error ... 7 debug.
int journal_priority(LogLevel level);

enum class LogFormat {
    timestamped, // RFC 3339 UTC time to the millisecond, then the level
    journal,     // "<N>" priority prefix only
};

// Sets the program name printed before every line (once, at start-up), and
// the format: journal if stderr is the stream JOURNAL_STREAM ("DEV:INODE")
// names, so a program started by systemd (and its children, which inherit
// both stderr and the variable) writes what the journal understands.
void set_log_program(std::string_view program);
// Lines less severe than `level` are not written (info by default).
void set_log_level(LogLevel level);
LogLevel log_level();

// True if `journal_stream` ("DEV:INODE", JOURNAL_STREAM's value) names the
// file open on descriptor `fd`.
bool is_journal_stream(const char* journal_stream, int fd);

// One complete line (with its '\n'), for `program_prefix` ("registryd[4200]: ").
std::string format_log_line(LogFormat format, LogLevel level, std::string_view program_prefix,
    std::timespec now, std::string_view text);

// Bytes as they may be printed inside one log or error line: control bytes
// and backslashes escaped as \xNN (a bucket name, a key: anything a user sent).
std::string printable(std::string_view bytes);

// Writes the line with a single write(2), so lines from registryd and its
// buckets sharing one stderr never interleave. Without a level: info.
void log_line(LogLevel level, std::string_view text);
void log_line(std::string_view text);

// A token bucket for lines a peer can cause (refused requests, protocol
// errors): up to `burst` lines at once, then `per_second` lines a second;
// what it holds back is counted and told in one "suppressed N messages"
// line before the next line it lets through. So a hostile client makes a
// bounded number of lines, and the log still says that it tried.
class RateLimitedLog {
public:
    using Clock = std::chrono::steady_clock;
    RateLimitedLog(unsigned per_second, unsigned burst);

    struct Admission {
        bool write = false;           // write this line
        std::uint64_t suppressed = 0; // lines held back since the last one written
    };
    // Decides for one line at `now` (the logic of log(), testable).
    Admission admit(Clock::time_point now);

    void log(LogLevel level, std::string_view text);

private:
    double per_second_;
    double burst_;
    double tokens_;
    Clock::time_point last_;
    std::uint64_t suppressed_ = 0;
};

// The limiter shared by every line a peer can cause in this process.
RateLimitedLog& peer_event_log();

} // namespace kv
