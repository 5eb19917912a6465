#include "exit_record.h"

namespace kv {

void append_resp(std::string& out, const ExitRecord& record, resp::Protocol protocol)
{
    resp::append_map_header(out, 9, protocol);
    resp::append_bulk(out, "name");
    resp::append_bulk(out, record.name);
    resp::append_bulk(out, "pid");
    resp::append_integer(out, record.pid);
    resp::append_bulk(out, "id");
    resp::append_integer(out, static_cast<long long>(record.id));
    resp::append_bulk(out, "reason");
    resp::append_bulk(out, record.reason);
    resp::append_bulk(out, "started_ms");
    resp::append_integer(out, record.started_ms);
    resp::append_bulk(out, "ended_ms");
    resp::append_integer(out, record.ended_ms);
    resp::append_bulk(out, "restart");
    resp::append_bulk(out, record.restart);
    resp::append_bulk(out, "restarts");
    resp::append_integer(out, static_cast<long long>(record.restarts));
    resp::append_bulk(out, "outcome");
    resp::append_bulk(out, record.outcome);
}

std::optional<ExitRecord> decode_exit_record(const resp::Value& reply)
{
    ExitRecord record;
    if ((reply.type != resp::Value::Type::array && reply.type != resp::Value::Type::map)
        || !reply.text_field("name", record.name) || !reply.integer_field("pid", record.pid)
        || !reply.integer_field("id", record.id) || !reply.text_field("reason", record.reason)
        || !reply.integer_field("started_ms", record.started_ms) || !reply.integer_field("ended_ms", record.ended_ms)
        || !reply.text_field("restart", record.restart) || !reply.integer_field("restarts", record.restarts)
        || !reply.text_field("outcome", record.outcome))
        return std::nullopt;
    return record;
}

} // namespace kv
