#include "bucket_record.h"

#include <charconv>

namespace kv {

void append_resp(std::string& out, const BucketRecord& record, const BucketStats* stats, resp::Protocol protocol)
{
    resp::append_map_header(out, stats ? 14 : 5, protocol);
    resp::append_bulk(out, "name");
    resp::append_bulk(out, record.name);
    resp::append_bulk(out, "pid");
    resp::append_integer(out, record.pid);
    resp::append_bulk(out, "id");
    resp::append_integer(out, static_cast<long long>(record.id));
    resp::append_bulk(out, "socket");
    resp::append_bulk(out, record.socket);
    resp::append_bulk(out, "segment");
    resp::append_bulk(out, record.segment);
    if (!stats)
        return;
    resp::append_bulk(out, "state");
    resp::append_bulk(out, stats->state);
    resp::append_bulk(out, "uptime_ms");
    resp::append_integer(out, stats->uptime_ms);
    resp::append_bulk(out, "keys");
    resp::append_integer(out, static_cast<long long>(stats->keys));
    resp::append_bulk(out, "bytes");
    resp::append_integer(out, static_cast<long long>(stats->bytes));
    resp::append_bulk(out, "monitors");
    resp::append_integer(out, static_cast<long long>(stats->monitors));
    resp::append_bulk(out, "restart");
    resp::append_bulk(out, stats->restart);
    resp::append_bulk(out, "keep");
    resp::append_integer(out, stats->keep ? 1 : 0);
    resp::append_bulk(out, "restarts");
    resp::append_integer(out, static_cast<long long>(stats->restarts));
    resp::append_bulk(out, "last_exit");
    resp::append_bulk(out, stats->last_exit);
}

namespace {

bool text_field(const resp::Value& reply, std::string_view name, std::string& out)
{
    const auto* value = reply.field(name);
    if (!value || value->type != resp::Value::Type::bulk)
        return false;
    out = value->text;
    return true;
}

template <typename Number>
bool integer_field(const resp::Value& reply, std::string_view name, Number& out)
{
    const auto* value = reply.field(name);
    if (!value || value->type != resp::Value::Type::integer)
        return false;
    out = static_cast<Number>(value->integer);
    return true;
}

} // namespace

std::optional<BucketRecord> decode_bucket_record(const resp::Value& reply, BucketStats* stats)
{
    BucketRecord record;
    if ((reply.type != resp::Value::Type::array && reply.type != resp::Value::Type::map) || !text_field(reply, "name", record.name)
        || !integer_field(reply, "pid", record.pid) || !integer_field(reply, "id", record.id)
        || !text_field(reply, "socket", record.socket) || !text_field(reply, "segment", record.segment))
        return std::nullopt;
    if (stats
        && (!text_field(reply, "state", stats->state) || !integer_field(reply, "uptime_ms", stats->uptime_ms)
            || !integer_field(reply, "keys", stats->keys) || !integer_field(reply, "bytes", stats->bytes)
            || !integer_field(reply, "monitors", stats->monitors) || !text_field(reply, "restart", stats->restart)
            || !integer_field(reply, "keep", stats->keep)
            || !integer_field(reply, "restarts", stats->restarts) || !text_field(reply, "last_exit", stats->last_exit)))
        return std::nullopt;
    return record;
}

std::string encode_table_entry(const BucketRecord& record)
{
    // The socket's length is written: a run dir (so a socket path) may hold
    // a newline. Segment names never do (registryd makes them).
    return std::to_string(record.pid) + " " + std::to_string(record.id) + " " + std::to_string(record.generation) + " "
        + std::to_string(record.socket.size()) + "\n" + record.socket + "\n" + record.segment;
}

bool decode_table_entry(std::string_view text, BucketRecord& record)
{
    const auto first = text.find('\n');
    if (first == std::string_view::npos)
        return false;
    std::string_view numbers = text.substr(0, first);
    const char* p = numbers.data();
    const char* end = p + numbers.size();
    auto parse = [&](auto& value) {
        while (p < end && *p == ' ')
            ++p;
        auto [next, error] = std::from_chars(p, end, value);
        p = next;
        return error == std::errc();
    };
    long long pid = 0;
    std::size_t socket_size = 0;
    if (!parse(pid) || !parse(record.id) || !parse(record.generation) || !parse(socket_size) || p != end)
        return false;
    const std::string_view rest = text.substr(first + 1);
    if (socket_size >= rest.size() || rest[socket_size] != '\n')
        return false;
    record.pid = static_cast<pid_t>(pid);
    record.socket.assign(rest.substr(0, socket_size));
    record.segment.assign(rest.substr(socket_size + 1));
    return true;
}

} // namespace kv
