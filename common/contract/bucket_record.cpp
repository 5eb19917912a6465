#include "bucket_record.h"

#include <charconv>

namespace kv {

void append_resp(std::string& out, const BucketRecord& record, const BucketStats* stats, resp::Protocol protocol)
{
    // node and address in cluster mode (both, always); else address alone,
    // with --listen-tcp.
    const bool clustered = !record.node.empty();
    const bool reachable = clustered || !record.address.empty();
    resp::append_map_header(out, (stats ? 14 : 5) + (clustered ? 1 : 0) + (reachable ? 1 : 0), protocol);
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
    if (clustered) {
        resp::append_bulk(out, "node");
        resp::append_bulk(out, record.node);
    }
    if (reachable) {
        resp::append_bulk(out, "address");
        resp::append_bulk(out, record.address);
    }
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

std::optional<BucketRecord> decode_bucket_record(const resp::Value& reply, BucketStats* stats)
{
    BucketRecord record;
    if ((reply.type != resp::Value::Type::array && reply.type != resp::Value::Type::map) || !reply.text_field("name", record.name)
        || !reply.integer_field("pid", record.pid) || !reply.integer_field("id", record.id)
        || !reply.text_field("socket", record.socket) || !reply.text_field("segment", record.segment))
        return std::nullopt;
    reply.text_field("node", record.node); // cluster mode only
    reply.text_field("address", record.address);
    if (stats
        && (!reply.text_field("state", stats->state) || !reply.integer_field("uptime_ms", stats->uptime_ms)
            || !reply.integer_field("keys", stats->keys) || !reply.integer_field("bytes", stats->bytes)
            || !reply.integer_field("monitors", stats->monitors) || !reply.text_field("restart", stats->restart)
            || !reply.integer_field("keep", stats->keep)
            || !reply.integer_field("restarts", stats->restarts) || !reply.text_field("last_exit", stats->last_exit)))
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
