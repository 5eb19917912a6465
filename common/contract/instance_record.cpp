#include "instance_record.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>

#include "run_dir.h"
#include "unique_fd.h"

namespace kv {

std::string encode(const InstanceRecord& record)
{
    return "pid " + std::to_string(record.pid) + "\ninstance " + record.instance + "\nnames " + record.names_segment + "\n";
}

namespace {

bool is_instance_id(std::string_view text)
{
    if (text.size() != 16)
        return false;
    for (char c : text) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

} // namespace

std::optional<InstanceRecord> decode_instance_record(std::string_view text)
{
    InstanceRecord record;
    bool has_pid = false;
    while (!text.empty()) {
        auto end = text.find('\n');
        if (end == std::string_view::npos)
            return std::nullopt; // every line ends in a newline: a torn write is no record
        std::string_view line = text.substr(0, end);
        text.remove_prefix(end + 1);
        auto space = line.find(' ');
        if (space == std::string_view::npos)
            return std::nullopt;
        std::string_view key = line.substr(0, space), value = line.substr(space + 1);
        if (key == "pid") {
            auto [next, error] = std::from_chars(value.data(), value.data() + value.size(), record.pid);
            has_pid = error == std::errc() && next == value.data() + value.size() && record.pid > 0;
        } else if (key == "instance") {
            record.instance = value;
        } else if (key == "names") {
            record.names_segment = value;
        }
    }
    if (!has_pid || !is_instance_id(record.instance)
        || record.names_segment.rfind(segment_prefix(record.instance), 0) != 0
        || record.names_segment.find('/', 1) != std::string::npos)
        return std::nullopt;
    return record;
}

std::optional<InstanceRecord> read_instance_record(int file_descriptor)
{
    char buffer[512];
    ssize_t size = ::pread(file_descriptor, buffer, sizeof buffer, 0);
    if (size <= 0)
        return std::nullopt;
    return decode_instance_record(std::string_view(buffer, static_cast<std::size_t>(size)));
}

std::optional<InstanceRecord> read_instance_record(const RunDir& dir)
{
    UniqueFd file(::openat(dir.fd(), lock_file_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!file)
        return std::nullopt;
    struct stat info;
    if (::fstat(file.get(), &info) == -1 || !S_ISREG(info.st_mode) || info.st_uid != dir.owner() || (info.st_mode & 022))
        return std::nullopt;
    return read_instance_record(file.get());
}

} // namespace kv
