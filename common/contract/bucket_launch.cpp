#include "bucket_launch.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <stdexcept>

#include "log.h"

namespace kv {

std::vector<std::pair<std::string, std::string>> encode(const BucketEnvironment& environment)
{
    return {
        { instance_environment_variable, environment.instance },
        { "KV_SEGMENT", environment.segment_name },
        { "KV_SEGMENT_FD", std::to_string(environment.segment_fd) },
        { "KV_SOCKET", environment.socket_path },
        { "KV_LISTEN_FD", std::to_string(environment.listen_fd) },
        { "KV_NOTIFY_FD", std::to_string(environment.notify_fd) },
        { "KV_BUCKET_SIZE", std::to_string(environment.bucket_size) },
        { "KV_SERVER_CONFIG", environment.server_config.encode() },
        { "KV_DEBUG_COMMAND", environment.debug_command_enabled ? "1" : "0" },
        { "KV_LOG_LEVEL", std::string(to_string(environment.log_level)) },
        { "KV_KEEP_DATA", environment.keep_data ? "1" : "0" },
        { "KV_WRITE_DEADLINE_NS", std::to_string(environment.write_deadline_ns) },
        // Always written, empty without TCP, so that none of these can be
        // inherited from registryd's own environment.
        { "KV_TCP_LISTEN_FD", environment.tcp_listen_fd >= 0 ? std::to_string(environment.tcp_listen_fd) : "" },
        { "KV_TCP_ADDRESS", environment.tcp_listen_fd >= 0 ? environment.tcp_address : "" },
        { "KV_PASSWORD_FD", environment.tcp_listen_fd >= 0 ? std::to_string(environment.password_fd) : "" },
    };
}

namespace {

std::string required(const EnvironmentLookup& lookup, const char* name)
{
    const char* value = lookup(name);
    if (!value || !*value)
        throw std::invalid_argument(std::string("missing ") + name + " (started by registryd)");
    return value;
}

template <typename Number>
Number number(const EnvironmentLookup& lookup, const char* name)
{
    const std::string text = required(lookup, name);
    Number value {};
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size())
        throw std::invalid_argument(std::string(name) + " is not a number: " + printable(text));
    return value;
}

int descriptor(const EnvironmentLookup& lookup, const char* name)
{
    const int fd = number<int>(lookup, name);
    if (fd < 0)
        throw std::invalid_argument(std::string(name) + " is not a descriptor: " + std::to_string(fd));
    return fd;
}

LogLevel log_level(const EnvironmentLookup& lookup)
{
    const std::string level = required(lookup, "KV_LOG_LEVEL");
    if (auto parsed = parse_log_level(level))
        return *parsed;
    throw std::invalid_argument("KV_LOG_LEVEL is not a log level: " + printable(level));
}

} // namespace

int decode_notify_descriptor(const EnvironmentLookup& lookup) { return descriptor(lookup, "KV_NOTIFY_FD"); }

BucketEnvironment decode_bucket_environment(const EnvironmentLookup& lookup)
{
    BucketEnvironment environment;
    environment.notify_fd = decode_notify_descriptor(lookup);
    environment.instance = required(lookup, instance_environment_variable);
    environment.segment_name = required(lookup, "KV_SEGMENT");
    environment.segment_fd = descriptor(lookup, "KV_SEGMENT_FD");
    environment.socket_path = required(lookup, "KV_SOCKET");
    environment.listen_fd = descriptor(lookup, "KV_LISTEN_FD");
    environment.bucket_size = number<std::size_t>(lookup, "KV_BUCKET_SIZE");
    environment.server_config = ServerConfig::decode(required(lookup, "KV_SERVER_CONFIG"));
    const char* debug = lookup("KV_DEBUG_COMMAND");
    environment.debug_command_enabled = debug && std::string_view(debug) == "1";
    const char* keep = lookup("KV_KEEP_DATA");
    environment.keep_data = keep && std::string_view(keep) == "1";
    if (lookup("KV_WRITE_DEADLINE_NS"))
        environment.write_deadline_ns = number<std::int64_t>(lookup, "KV_WRITE_DEADLINE_NS");
    environment.log_level = log_level(lookup);
    if (const char* tcp = lookup("KV_TCP_LISTEN_FD"); tcp && *tcp) {
        environment.tcp_listen_fd = descriptor(lookup, "KV_TCP_LISTEN_FD");
        environment.tcp_address = required(lookup, "KV_TCP_ADDRESS");
        environment.password_fd = descriptor(lookup, "KV_PASSWORD_FD");
    }
    return environment;
}

std::vector<std::pair<std::string, std::string>> encode(const TextServerEnvironment& environment)
{
    return {
        { instance_environment_variable, environment.instance },
        { "KV_LISTEN_FD", std::to_string(environment.listen_fd) },
        { "KV_NOTIFY_FD", std::to_string(environment.notify_fd) },
        { "KV_RUN_DIR", environment.run_dir },
        { "KV_SERVER_CONFIG", environment.server_config.encode() },
        { "KV_LOG_LEVEL", std::string(to_string(environment.log_level)) },
        // Always written, empty without a password, as a bucket's.
        { "KV_PASSWORD_FD", environment.password_fd >= 0 ? std::to_string(environment.password_fd) : "" },
    };
}

TextServerEnvironment decode_text_server_environment(const EnvironmentLookup& lookup)
{
    TextServerEnvironment environment;
    environment.notify_fd = decode_notify_descriptor(lookup);
    environment.instance = required(lookup, instance_environment_variable);
    environment.listen_fd = descriptor(lookup, "KV_LISTEN_FD");
    environment.run_dir = required(lookup, "KV_RUN_DIR");
    environment.server_config = ServerConfig::decode(required(lookup, "KV_SERVER_CONFIG"));
    environment.log_level = log_level(lookup);
    if (const char* password = lookup("KV_PASSWORD_FD"); password && *password)
        environment.password_fd = descriptor(lookup, "KV_PASSWORD_FD");
    return environment;
}

std::string failure_line(std::string_view why)
{
    std::string line;
    for (char c : why.substr(0, longest_readiness_line - 2))
        line += (c == '\n' || c == '\r') ? ' ' : c;
    if (line.empty())
        line = "failed without saying why";
    return line + "\n";
}

Readiness parse_readiness(std::string_view text, bool at_end, std::string& why)
{
    const auto newline = text.find('\n');
    if (newline == 0)
        return Readiness::ready;
    if (newline != std::string_view::npos || text.size() >= longest_readiness_line) {
        why = printable(text.substr(0, std::min(newline, longest_readiness_line)));
        return Readiness::failed;
    }
    return at_end ? Readiness::closed : Readiness::waiting;
}

Readiness read_readiness(int fd, std::string& text, std::string& why)
{
    bool at_end = false;
    for (;;) {
        char buffer[256];
        const ssize_t size = ::read(fd, buffer, sizeof buffer);
        if (size > 0) {
            text.append(buffer, static_cast<std::size_t>(size));
            if (text.size() < longest_readiness_line)
                continue;
        } else if (size == -1 && errno == EINTR) {
            continue;
        } else {
            at_end = size == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
        }
        break;
    }
    return parse_readiness(text, at_end, why);
}

} // namespace kv
