// How a connection of the text server reaches the registry and the buckets,
// the fast way each allows: names through the name table registryd
// publishes in shared memory, GET through the bucket's segment (the
// shared-memory reader), PUT and DELETE through the bucket's own socket, and
// only CREATE (and a name the table does not have) through registryd.
//
// Every file and socket it uses must belong to the run directory's owner
// (the owner of the segment, SO_PEERCRED of the socket), as for kvctl.
// Blocking, with a deadline on every call: it serves one connection, in a
// process of its own (textd/main.cpp says why).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "bucket_record.h"
#include "client.h"
#include "name_table.h"
#include "run_dir.h"
#include "shared_table_reader.h"

namespace kv::text {

// What a call came to.
enum class Outcome {
    done,
    not_found, // no bucket of that name (NOT FOUND)
    failed,    // anything else: the bucket or registryd refused, failed or did not answer in time
};

class BucketAccess {
public:
    // `run_dir` must be trusted as kvctl trusts it (RunDir::open_trusted);
    // throws std::runtime_error with one line if not. `call_timeout` bounds
    // each call to registryd or a bucket.
    BucketAccess(const std::string& run_dir, std::chrono::milliseconds call_timeout);

    // CREATE: done once the bucket exists (made now or before); `why` says
    // why not otherwise, for the log.
    Outcome create(std::string_view name, std::string& why);
    // The value, or "" for a missing key.
    Outcome get(std::string_view name, std::string_view key, std::string& value, std::string& why);
    Outcome put(std::string_view name, std::string_view key, std::string_view value, std::string& why);
    Outcome del(std::string_view name, std::string_view key, std::string& why);

    // Closes every bucket socket and mapping it holds: after each client,
    // and while a client is idle, so that nothing pins a stopped bucket's
    // segment or takes one of a bucket's --max-connections for long.
    void forget() { open_.clear(); }
    bool holds_any() const { return !open_.empty(); }

private:
    // What this connection holds open for one bucket process (by its id: a
    // restarted bucket is a new process, with a new id).
    struct Open {
        BucketRecord record;
        std::optional<Client> socket;             // for PUT and DELETE, once one came
        std::unique_ptr<SharedTableReader> table; // for GET, once one came
        bool table_tried = false;
    };

    // The bucket now serving `name`, opened or found in `open_`; empty if
    // there is none (not_found) or registryd could not say (failed, `why`).
    // `exited`: the id of a process found gone, which the name table may
    // still give for a moment: registryd is asked instead.
    Open* resolve(std::string_view name, Outcome& outcome, std::string& why, unsigned long long exited = 0);
    // One call on the bucket's socket, retried once on the process now
    // serving the name if this one (or `exited`) exited under it.
    Outcome bucket_call(std::string_view name, const std::vector<std::string>& request, resp::Value& reply, std::string& why,
        unsigned long long exited = 0);
    Client connect_registry() const;
    ConnectOptions options() const;

    RunDir dir_;
    std::chrono::milliseconds call_timeout_;
    std::unique_ptr<NameTableReader> names_;
    std::unordered_map<unsigned long long, Open> open_;
};

} // namespace kv::text
