#include "bucket_access.h"

#include <stdexcept>
#include <utility>

#include "bucket_name.h"
#include "error_code.h"
#include "instance_record.h"
#include "log.h"
#include "system_error.h"

namespace kv::text {

namespace {

// Buckets one connection keeps open at once (a socket and a mapping each);
// past it, they are all closed and reopened as they come.
constexpr std::size_t most_open_buckets = 32;

// Another node's bucket: LOOKUP gives its node and address, and no socket
// or segment here (bucket_record.h).
bool on_another_node(const BucketRecord& record) { return record.socket.empty() && !record.node.empty(); }

// Another node's bucket that textd has no way to reach (no address, no
// password): asking registryd again will not change that.
class NoWayThere : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

} // namespace

BucketAccess::BucketAccess(const std::string& run_dir, std::chrono::milliseconds call_timeout, std::optional<std::string> password)
    : dir_(RunDir::open_trusted(run_dir))
    , call_timeout_(call_timeout)
    , password_(std::move(password))
{
    if (auto record = read_instance_record(dir_))
        names_ = NameTableReader::open(record->names_segment, dir_.owner());
}

BucketAccess::Process BucketAccess::process_of(const BucketRecord& record)
{
    return Process { on_another_node(record) ? record.node : std::string(), record.id, record.pid };
}

Client BucketAccess::connect_bucket(const Open& open) const
{
    const BucketRecord& record = open.record;
    if (!on_another_node(record))
        return Client::connect(record.socket, options());
    const std::string where = "bucket " + shown_bucket_name(record.name) + " is on node " + printable(record.node);
    if (record.address.empty())
        throw NoWayThere(where + ", which has no TCP address (its registryd runs without --listen-tcp)");
    if (!password_)
        throw NoWayThere(where + ", at " + record.address + " over TCP, and textd has no password to AUTH with there (registryd --password-file)");
    ConnectOptions tcp = options();
    tcp.expected_peer_uid.reset();
    tcp.password = password_;
    return Client::connect_tcp(record.address, tcp);
}

ConnectOptions BucketAccess::options() const
{
    return ConnectOptions { dir_.owner(), std::chrono::steady_clock::now() + call_timeout_, {} };
}

Client BucketAccess::connect_registry() const
{
    // A connection per call (or per LOOKUP retried): CREATE and a LOOKUP are
    // rare here, and a text client must not hold one of registryd's
    // --max-connections for its whole life.
    return Client::connect(registry_socket_path(dir_.path()), options());
}

BucketAccess::Open* BucketAccess::resolve(std::string_view name, Outcome& outcome, std::string& why, const Process& exited)
{
    outcome = Outcome::done;
    // A name no bucket can have (too long, not UTF-8 ...) is simply not found.
    if (bucket_name_error(name)) {
        outcome = Outcome::not_found;
        return nullptr;
    }
    BucketRecord record;
    const std::string wanted(name);
    const auto in_table = names_ ? names_->lookup(wanted, record) : NameTableReader::Result::unavailable;
    if (in_table != NameTableReader::Result::found || process_of(record) == exited) {
        // Not in the table: gone, or being restarted (the table holds ready
        // buckets only). LOOKUP waits through a restart.
        try {
            // A process that has just exited can still be registryd's
            // answer for a moment: its socket refuses before its exit is
            // reported (the kernel closes a process's files, then tells
            // its parent). Asked again until registryd has seen the exit,
            // within the call's deadline. Not for another node's bucket:
            // its exit reaches this registryd through etcd, seconds later
            // if its node died, so the caller is told at once.
            const auto deadline = std::chrono::steady_clock::now() + call_timeout_;
            Client registry = connect_registry();
            for (;;) {
                const resp::Value reply = registry.call({ "LOOKUP", wanted });
                if (reply.is_error()) {
                    outcome = error_code_of(reply.text) == ErrorCode::not_found ? Outcome::not_found : Outcome::failed;
                    why = "LOOKUP " + shown_bucket_name(wanted) + ": " + reply.text;
                } else if (auto decoded = decode_bucket_record(reply)) {
                    record = std::move(*decoded);
                    const bool same = process_of(record) == exited;
                    if (same && !on_another_node(record) && std::chrono::steady_clock::now() < deadline)
                        continue;
                    if (same) {
                        outcome = Outcome::failed;
                        why = on_another_node(record)
                            ? "bucket " + shown_bucket_name(wanted) + " on node " + printable(record.node) + " did not answer at " + record.address
                            : "bucket " + shown_bucket_name(wanted) + " exited, and registryd did not see it in time";
                    }
                } else {
                    outcome = Outcome::failed;
                    why = "LOOKUP " + shown_bucket_name(wanted) + ": a reply textd cannot read";
                }
                break;
            }
        } catch (const std::exception& error) {
            outcome = Outcome::failed;
            why = "LOOKUP " + shown_bucket_name(wanted) + ": " + error.what();
        }
        // registryd could not be asked (its --max-connections reached, say):
        // the table's answer stands.
        if (outcome == Outcome::failed && in_table == NameTableReader::Result::missing && exited.id == 0)
            outcome = Outcome::not_found;
        if (outcome != Outcome::done)
            return nullptr;
    }
    const Process process = process_of(record);
    if (auto it = open_.find(process); it != open_.end())
        return &it->second;
    // What is held for an earlier process of the same name goes.
    std::erase_if(open_, [&record](const auto& entry) { return entry.second.record.name == record.name; });
    if (open_.size() >= most_open_buckets)
        open_.clear();
    Open& opened = open_[process];
    opened.record = std::move(record);
    return &opened;
}

Outcome BucketAccess::bucket_call(std::string_view name, const std::vector<std::string>& request, resp::Value& reply, std::string& why,
    Process exited)
{
    for (int attempt = 0;; ++attempt) {
        Outcome outcome = Outcome::done;
        Open* bucket = resolve(name, outcome, why, exited);
        if (!bucket)
            return outcome;
        const Process id = process_of(bucket->record);
        try {
            if (!bucket->socket)
                bucket->socket.emplace(connect_bucket(*bucket));
            bucket->socket->set_deadline(std::chrono::steady_clock::now() + call_timeout_);
            reply = bucket->socket->call(request);
            if (reply.is_error()) {
                why = request[0] + " on bucket " + shown_bucket_name(name) + ": " + reply.text;
                return Outcome::failed;
            }
            return Outcome::done;
        } catch (const AuthenticationFailed& error) {
            // Another node refused our password: asking again will not help.
            open_.erase(id);
            why = request[0] + " on bucket " + shown_bucket_name(name) + ": " + error.what();
            return Outcome::failed;
        } catch (const NoWayThere& error) {
            open_.erase(id);
            why = request[0] + " on bucket " + shown_bucket_name(name) + ": " + error.what();
            return Outcome::failed;
        } catch (const TimedOut& error) {
            open_.erase(id); // a late reply must not answer the next call
            why = request[0] + " on bucket " + shown_bucket_name(name) + ": " + error.what();
            return Outcome::failed;
        } catch (const std::exception& error) {
            // Its process exited under us (the socket is gone, or closed
            // mid-call): ask again who serves the name, once, past the
            // table, which may still give the process that exited.
            open_.erase(id);
            exited = id;
            why = request[0] + " on bucket " + shown_bucket_name(name) + ": " + error.what();
            if (attempt > 0)
                return Outcome::failed;
        }
    }
}

Outcome BucketAccess::create(std::string_view name, std::string& why)
{
    try {
        const resp::Value reply = connect_registry().call({ "CREATE", std::string(name) });
        if (!reply.is_error())
            return Outcome::done;
        why = "CREATE " + shown_bucket_name(name) + ": " + reply.text;
    } catch (const std::exception& error) {
        why = "CREATE " + shown_bucket_name(name) + ": " + error.what();
    }
    return Outcome::failed;
}

Outcome BucketAccess::get(std::string_view name, std::string_view key, std::string& value, std::string& why)
{
    value.clear();
    Outcome outcome = Outcome::done;
    Open* bucket = resolve(name, outcome, why);
    if (!bucket)
        return outcome;
    if (!bucket->table_tried) {
        bucket->table_tried = true;
        // Another node's bucket has no segment here: it is asked over TCP.
        if (!on_another_node(bucket->record))
            bucket->table = SharedTableReader::open(bucket->record.segment, TableKind::bucket, dir_.owner());
    }
    Process exited {};
    if (bucket->table) {
        switch (bucket->table->get(key, value)) {
        case SharedTableReader::Result::found: return Outcome::done;
        case SharedTableReader::Result::missing: value.clear(); return Outcome::done;
        case SharedTableReader::Result::gone: // its process exited: ask who serves the name now
            exited = process_of(bucket->record);
            open_.erase(exited);
            break;
        case SharedTableReader::Result::busy: break; // the socket will say
        }
    }
    resp::Value reply;
    outcome = bucket_call(name, { "GET", std::string(key) }, reply, why, exited);
    if (outcome == Outcome::done)
        value = reply.type == resp::Value::Type::null ? std::string() : std::move(reply.text);
    return outcome;
}

Outcome BucketAccess::put(std::string_view name, std::string_view key, std::string_view value, std::string& why)
{
    resp::Value reply;
    return bucket_call(name, { "SET", std::string(key), std::string(value) }, reply, why);
}

Outcome BucketAccess::del(std::string_view name, std::string_view key, std::string& why)
{
    resp::Value reply;
    return bucket_call(name, { "DEL", std::string(key) }, reply, why);
}

} // namespace kv::text
