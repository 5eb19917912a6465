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

std::optional<ExitRecord> decode_exit_record(const resp::Value& reply)
{
    ExitRecord record;
    if ((reply.type != resp::Value::Type::array && reply.type != resp::Value::Type::map)
        || !text_field(reply, "name", record.name) || !integer_field(reply, "pid", record.pid)
        || !integer_field(reply, "id", record.id) || !text_field(reply, "reason", record.reason)
        || !integer_field(reply, "started_ms", record.started_ms) || !integer_field(reply, "ended_ms", record.ended_ms)
        || !text_field(reply, "restart", record.restart) || !integer_field(reply, "restarts", record.restarts)
        || !text_field(reply, "outcome", record.outcome))
        return std::nullopt;
    return record;
}

} // namespace kv
