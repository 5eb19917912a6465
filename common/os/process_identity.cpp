#include "process_identity.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <optional>
#include <string>
#include <string_view>

#include "small_file.h"
#include "system_error.h"

namespace kv {

namespace {

struct Status {
    char state = 0;
    std::uint64_t start_time = 0;
};

// The fields of /proc/PID/stat this file needs. Field 2 (comm) is in
// parentheses and may itself hold spaces and ')', so the fields after it are
// counted from the LAST ')' of the line. Empty if the process does not exist
// (ENOENT, or ESRCH when it was reaped while we read) or the line is not
// understood; `error` says which errno, 0 for a line not understood.
std::optional<Status> read_status(pid_t pid, int& error)
{
    error = 0;
    if (pid <= 0)
        return std::nullopt;
    // comm is at most 16 bytes (TASK_COMM_LEN) and the 50-odd numbers at
    // most 20 digits each: the line fits.
    const auto contents = read_small_file("/proc/" + std::to_string(pid) + "/stat", 2048, error);
    if (!contents)
        return std::nullopt;
    const std::string_view line(*contents);
    const auto close = line.rfind(')');
    if (close == std::string_view::npos)
        return std::nullopt;
    // After ") ": field 3 (state), then fields 4 to 22.
    std::string_view rest = line.substr(close + 1);
    Status status;
    for (int field = 3; field <= 22; ++field) {
        while (!rest.empty() && rest.front() == ' ')
            rest.remove_prefix(1);
        const auto end = std::min(rest.find(' '), rest.size());
        const std::string_view text = rest.substr(0, end);
        if (text.empty())
            return std::nullopt;
        if (field == 3) {
            if (text.size() != 1)
                return std::nullopt;
            status.state = text.front();
        } else if (field == 22) {
            auto [next, failure] = std::from_chars(text.data(), text.data() + text.size(), status.start_time);
            if (failure != std::errc() || next != text.data() + text.size())
                return std::nullopt;
        }
        rest.remove_prefix(end);
    }
    return status;
}

} // namespace

ProcessIdentity self_identity()
{
    const pid_t pid = ::getpid();
    int error = 0;
    auto status = read_status(pid, error);
    if (!status)
        throw SystemError("unable to read", "/proc/" + std::to_string(pid) + "/stat", error ? error : EPROTO);
    return ProcessIdentity { pid, status->start_time };
}

std::optional<ProcessIdentity> identify_process(pid_t pid)
{
    int error = 0;
    auto status = read_status(pid, error);
    if (!status)
        return std::nullopt;
    return ProcessIdentity { pid, status->start_time };
}

bool is_running(const ProcessIdentity& identity)
{
    int error = 0;
    auto status = read_status(identity.pid, error);
    return status && status->start_time == identity.start_time && status->state != 'Z' && status->state != 'X';
}

} // namespace kv
