// How a connection of the text server reaches the registry and the buckets,
// the fast way each allows: names through the name table registryd
// publishes in shared memory, GET through the bucket's segment (the
// shared-memory reader), PUT and DELETE through the bucket's own socket, and
// only CREATE (and a name the table does not have) through registryd.
//
// In cluster mode a name may be another node's (README "Cluster"): the
// table never has it, so registryd is asked each time (its LOOKUP answers
// from its copy of the cluster's names, without a round trip to etcd), and
// GET, PUT and DELETE go over TCP to the address LOOKUP gives, with AUTH
// and the password registryd hands textd (--password-file). So a request for
// a name on another node is served there and answered here.
//
// Every file and socket it uses must belong to the run directory's owner
// (the owner of the segment, SO_PEERCRED of the socket), as for kvctl; a
// TCP peer has no uid to check: there the password is the trust.
// Blocking, with a deadline on every call: it serves one connection, in a
// process of its own (textd/main.cpp says why).
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

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
    // each call to registryd or a bucket. `password`: what to AUTH with at
    // another node's bucket; none: such a bucket is a failure, said in `why`.
    BucketAccess(const std::string& run_dir, std::chrono::milliseconds call_timeout, std::optional<std::string> password = {});

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
    // One bucket process: its id (a restarted bucket is a new process, with
    // a new id) and, for another node's, that node: each node's registryd
    // numbers its own buckets, so two nodes' ids can be equal; and its pid,
    // since a node's registryd that restarts numbers from 1 again. id 0: none.
    // (No member initialisers: it is a default argument below, inside the
    // class, where g++ cannot use them yet; `{}` is "", 0.)
    struct Process {
        std::string node; // "" for this node's buckets
        unsigned long long id;
        long long pid;
        auto operator<=>(const Process&) const = default;
    };
    static Process process_of(const BucketRecord& record);

    // What this connection holds open for one bucket process.
    struct Open {
        BucketRecord record;
        std::optional<Client> socket;             // for PUT and DELETE (any call, on another node), once one came
        std::unique_ptr<SharedTableReader> table; // for GET, once one came
        bool table_tried = false;
    };

    // The bucket now serving `name`, opened or found in `open_`; empty if
    // there is none (not_found) or registryd could not say (failed, `why`).
    // `exited`: a process found gone, which the name table may still give
    // for a moment: registryd is asked instead.
    Open* resolve(std::string_view name, Outcome& outcome, std::string& why, const Process& exited = {});
    // One call on the bucket's socket (or TCP address), retried once on the
    // process now serving the name if this one (or `exited`) exited under it.
    Outcome bucket_call(std::string_view name, const std::vector<std::string>& request, resp::Value& reply, std::string& why,
        Process exited = {});
    // A connection to the bucket `open` is for: its socket, or another
    // node's TCP address with AUTH. Throws as Client::connect and
    // connect_tcp do, and std::runtime_error if there is no way there.
    Client connect_bucket(const Open& open) const;
    Client connect_registry() const;
    ConnectOptions options() const;

    RunDir dir_;
    std::chrono::milliseconds call_timeout_;
    std::optional<std::string> password_;
    std::unique_ptr<NameTableReader> names_;
    std::map<Process, Open> open_;
};

} // namespace kv::text
