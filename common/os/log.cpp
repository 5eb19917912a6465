#include "log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <charconv>
#include <chrono>
#include <string>
#include <utility>

namespace kv {

static std::string program_prefix = "kv: ";
static LogFormat format = LogFormat::timestamped;
static LogLevel threshold = LogLevel::info;

std::string_view to_string(LogLevel level)
{
    switch (level) {
    case LogLevel::error: return "error";
    case LogLevel::warning: return "warning";
    case LogLevel::notice: return "notice";
    case LogLevel::info: return "info";
    case LogLevel::debug: return "debug";
    }
    return "info";
}

std::optional<LogLevel> parse_log_level(std::string_view text)
{
    for (LogLevel level : { LogLevel::error, LogLevel::warning, LogLevel::notice, LogLevel::info, LogLevel::debug }) {
        if (text == to_string(level))
            return level;
    }
    return std::nullopt;
}

int journal_priority(LogLevel level) { return 3 + static_cast<int>(level); } // LOG_ERR is 3, LOG_DEBUG 7

bool is_journal_stream(const char* journal_stream, int fd)
{
    // systemd sets JOURNAL_STREAM to the device and inode of the stream it
    // connected stdout/stderr to; the variable is inherited by programs whose
    // stderr is somewhere else, so it counts only if the numbers match.
    if (!journal_stream)
        return false;
    // "DEVICE:INODE", both decimal, nothing after. Parsed with from_chars,
    // not sscanf, which would link all of scanf into every program of ours.
    unsigned long long device = 0, inode = 0;
    const std::string_view text(journal_stream);
    const char* const end = text.data() + text.size();
    const auto [after_device, device_error] = std::from_chars(text.data(), end, device);
    if (device_error != std::errc() || after_device == end || *after_device != ':')
        return false;
    const auto [after_inode, inode_error] = std::from_chars(after_device + 1, end, inode);
    if (inode_error != std::errc() || after_inode != end)
        return false;
    struct stat info {};
    if (::fstat(fd, &info) == -1)
        return false;
    return info.st_dev == device && info.st_ino == inode;
}

void set_log_program(std::string_view program)
{
    program_prefix = std::string(program) + "[" + std::to_string(::getpid()) + "]: ";
    format = is_journal_stream(std::getenv("JOURNAL_STREAM"), STDERR_FILENO) ? LogFormat::journal : LogFormat::timestamped;
}

void set_log_level(LogLevel level) { threshold = level; }
LogLevel log_level() { return threshold; }

std::string format_log_line(LogFormat line_format, LogLevel level, std::string_view prefix, std::timespec now, std::string_view text)
{
    std::string line;
    line.reserve(prefix.size() + text.size() + 40);
    if (line_format == LogFormat::journal) {
        line += '<';
        line += static_cast<char>('0' + journal_priority(level));
        line += '>';
    } else {
        // The UTC calendar by arithmetic (<chrono>'s civil calendar), not
        // gmtime_r: that one goes through glibc's time-zone code, which links
        // a TZ parser and all of scanf into every program of ours.
        using namespace std::chrono;
        const sys_seconds seconds { std::chrono::seconds(now.tv_sec) };
        const sys_days day = floor<days>(seconds);
        const year_month_day date { day };
        const hh_mm_ss time { seconds - day };
        char stamp[64]; // room for any int the format could print, so g++ sees no truncation
        std::snprintf(stamp, sizeof stamp, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ ", static_cast<int>(date.year()),
            static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()), static_cast<int>(time.hours().count()),
            static_cast<int>(time.minutes().count()), static_cast<int>(time.seconds().count()),
            static_cast<int>(now.tv_nsec / 1000000));
        line += stamp;
        line += to_string(level);
        line += ' ';
    }
    line += prefix;
    line += text;
    line += '\n';
    return line;
}

void log_line(LogLevel level, std::string_view text)
{
    if (level > threshold)
        return;
    std::timespec now {};
    ::clock_gettime(CLOCK_REALTIME, &now);
    const std::string line = format_log_line(format, level, program_prefix, now, text);
    // Logging must never stop the program: a closed stderr is ignored.
    [[maybe_unused]] auto written = ::write(STDERR_FILENO, line.data(), line.size());
}

void log_line(std::string_view text) { log_line(LogLevel::info, text); }

RateLimitedLog::RateLimitedLog(unsigned per_second, unsigned burst)
    : per_second_(per_second)
    , burst_(std::max(1u, burst))
    , tokens_(burst_)
    , last_(Clock::now())
{
}

RateLimitedLog::Admission RateLimitedLog::admit(Clock::time_point now)
{
    if (now > last_) {
        const double elapsed = std::chrono::duration<double>(now - last_).count();
        tokens_ = std::min(burst_, tokens_ + elapsed * per_second_);
        last_ = now;
    }
    if (tokens_ < 1) {
        ++suppressed_;
        return {};
    }
    tokens_ -= 1;
    return { true, std::exchange(suppressed_, 0) };
}

void RateLimitedLog::log(LogLevel level, std::string_view text)
{
    if (level > threshold)
        return;
    const Admission admission = admit(Clock::now());
    if (!admission.write)
        return;
    if (admission.suppressed > 0)
        log_line(LogLevel::warning, "suppressed " + std::to_string(admission.suppressed) + " messages (more than the log takes from clients)");
    log_line(level, text);
}

RateLimitedLog& peer_event_log()
{
    // 20 at once, then 10 a second: a few hundred bytes a second at most.
    static RateLimitedLog log(10, 20);
    return log;
}

std::string printable(std::string_view bytes)
{
    std::string out;
    for (unsigned char c : bytes) {
        if (c < 0x20 || c == 0x7f || c == '\\') {
            char code[8];
            std::snprintf(code, sizeof code, "\\x%02x", c);
            out += code;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

} // namespace kv
