// Cluster: registryd's membership of a kv cluster kept in etcd
// (registryd --cluster URLS --node NAME). What it keeps there, under the
// prefix (--cluster-prefix, "kv/" by default):
//
//   <prefix>nodes/<node>  this registryd: {"node","address","pid","instance","started"}
//   <prefix>names/<name>  a bucket: {"node","pid","id","address","state","restart","keep"}
//
// Both are put with this registryd's one lease, which it keeps alive from
// its own loop (a keepalive every third of the TTL): if registryd dies or
// stops answering, the lease expires and every name it held is free.
//
// A name is claimed before its bucket is spawned, in one transaction that
// puts the key only if it does not exist (its create revision is 0): of
// any number of nodes claiming one name at once, exactly one succeeds, and
// the others read the winner in the same transaction. The claim's revision
// (the key's create revision) is the claim's identity: later updates and the
// release compare it, so they can never touch a claim another node made
// after ours was lost.
//
// Every node keeps a copy of both prefixes, fed by one etcd watch, so a
// LOOKUP of another node's name needs no round trip to etcd.
//
// The lease is "valid" until the TTL has passed since the last keepalive
// that etcd confirmed was *sent*: past that, another node may own our names.
// A lease etcd says is gone is replaced with a new one, and registryd then
// claims its names again (lease_renewed).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "asio.h"
#include "etcd_client.h"
#include "table_layout.h"

namespace kv {

struct ClusterOptions {
    std::vector<EtcdEndpoint> endpoints;
    std::string node;                // --node: unique among live nodes
    std::string prefix = "kv/";      // --cluster-prefix
    std::chrono::seconds lease_ttl { 10 };
    std::string address;             // where other nodes reach this registry (--listen-tcp's address; "" without)
    std::string instance;            // registryd's instance id
    std::chrono::milliseconds call_timeout { 2000 }; // each etcd call
};

// A bucket as the cluster knows it: one name's value, and its key's facts.
struct ClusterBucket {
    std::string name;
    std::string node;
    pid_t pid = -1;
    unsigned long long id = 0;
    std::string address;            // the bucket's TCP address (--listen-tcp), "" without
    std::string state = "starting"; // "starting", then "ready"
    std::string restart = "temporary";
    bool keep = false;
    long long revision = 0; // the key's create revision: the claim's identity
    long long lease = 0;
};

// A node as the cluster knows it.
struct ClusterNode {
    std::string node;
    std::string address;
    pid_t pid = -1;
    std::string instance;
    long long started_ms = 0;
};

enum class ClusterState {
    joining, // no lease yet, or a lost one being replaced
    joined,  // a lease etcd confirmed within its TTL
    expired, // the TTL passed without a confirmed keepalive: our names may be another node's
};
const char* to_string(ClusterState state);

class Cluster {
public:
    struct Hooks {
        // A lost lease was replaced: every name of this node must be claimed again.
        std::function<void()> lease_renewed;
        // The copy's entry for `name` changed (put, updated or deleted).
        std::function<void(const std::string& name)> name_changed;
        // etcd confirmed the lease: claims under it surely stand until valid_until().
        std::function<void()> validity_extended;
    };
    Cluster(asio::io_context& io, ClusterOptions options, Hooks hooks);
    ~Cluster();
    Cluster(const Cluster&) = delete;
    Cluster& operator=(const Cluster&) = delete;

    // Grants the lease, registers this node (refused if a live node has the
    // name) and loads the copy; `done` gets "" once joined, or why not.
    void join(std::function<void(const std::string& error)> done);

    struct Claim {
        enum class Outcome { claimed, taken, failed } outcome = Outcome::failed;
        ClusterBucket owner; // claimed: ours, with its revision; taken: the owner's
        std::string error;   // failed: why
        long long as_of = 0; // the etcd revision the outcome was read at
    };
    // Claims `entry.name` for this node, with `entry` as its first value.
    void claim(const ClusterBucket& entry, std::function<void(const Claim&)> done);
    // Claims again, under the current lease, a name this node holds (after a
    // lost lease); the same outcomes.
    void reclaim(const ClusterBucket& entry, std::function<void(const Claim&)> done) { claim(entry, std::move(done)); }
    // Puts `entry` as the name's value if the claim `entry.revision` still stands.
    void update(const ClusterBucket& entry);
    // Deletes the name if the claim `revision` still stands.
    void release(const std::string& name, long long revision);
    // Revokes the lease (every key of this node goes at once), then `done`.
    void leave(std::function<void()> done);

    // The copy: another node's bucket, or this node's as etcd has it.
    const ClusterBucket* find(const std::string& name) const;
    const std::map<std::string, ClusterBucket>& names() const { return names_; }
    // The etcd revision the copy is up to date with: what etcd said at
    // that revision, the copy says too.
    long long copy_revision() const { return copy_revision_; }
    const std::map<std::string, ClusterNode>& nodes() const { return nodes_; }

    // `expired` from the instant the lease's validity ends, whether or not
    // a keepalive has failed since.
    ClusterState state() const
    {
        return state_ == ClusterState::joined && fence_clock_ns() >= valid_until_ns_ ? ClusterState::expired : state_;
    }
    // The lease's id, 0 without one.
    long long lease() const { return lease_; }
    // How long our claims surely stand without another keepalive (0: past).
    std::chrono::milliseconds valid_for() const;
    // The same instant on the fence's clock (fence_clock_ns, table_layout.h).
    std::int64_t valid_until_ns() const { return valid_until_ns_; }
    const ClusterOptions& options() const { return options_; }
    // Why the last etcd call failed ("" after a success).
    const std::string& last_error() const { return last_error_; }
    std::uint64_t leases_lost() const { return leases_lost_; }

private:
    std::string name_key(const std::string& name) const { return options_.prefix + "names/" + name; }
    std::string node_key() const { return options_.prefix + "nodes/" + options_.node; }
    void grant(std::function<void(const std::string& error)> done);
    void register_node(std::function<void(const std::string& error)> done);
    void keep_alive();
    void schedule_keepalive(std::chrono::milliseconds after);
    std::chrono::milliseconds keepalive_period() const; // a third of the TTL
    void lease_gone();
    void replace_lease(); // grants a new lease (again until one is granted), registers, reclaims
    // The node's key could not be put under the new lease `lease`: puts it
    // again every 500 ms until it is, or until the lease is replaced.
    void register_again_later(long long lease);
    void load_and_watch();
    void apply(const std::string& key, const std::string& value, bool deleted, long long create_revision, long long lease);
    void note_error(const std::string& error);
    void released(const std::string& name); // the release is done (or given up): waiting claims go

    asio::io_context& io_;
    ClusterOptions options_;
    Hooks hooks_;
    EtcdClient etcd_;
    ClusterState state_ = ClusterState::joining;
    long long lease_ = 0;
    // Until when the lease surely stands, on the fence's clock: the send
    // time of the last keepalive etcd confirmed, plus the TTL it answered.
    std::int64_t valid_until_ns_ = 0;
    asio::steady_timer keepalive_timer_;
    asio::steady_timer registration_timer_; // register_again_later
    asio::steady_timer watch_timer_;
    std::shared_ptr<EtcdClient::Watch> watch_;
    std::map<std::string, ClusterBucket> names_;
    std::map<std::string, ClusterNode> nodes_;
    // The last update() of each name not yet confirmed by etcd: a failed
    // one is sent again only if it is still the newest.
    std::map<std::string, ClusterBucket> latest_updates_;
    // Names whose release etcd has not confirmed yet, and the claims that
    // wait for it: a claim sent meanwhile could find the old key (ours, under
    // this lease), and the release would then delete the new claim.
    std::map<std::string, std::vector<std::function<void()>>> releasing_;
    std::string last_error_;
    // A keepalive failed since the last one etcd confirmed: the watch may
    // have been cut off unseen, so the next confirmed one reloads the copy.
    bool keepalive_failed_ = false;
    // Why the node's key could not be registered again (register_again_later),
    // logged when it changes; kept apart from last_error_, which a confirmed
    // keepalive clears.
    std::string registration_error_;
    std::uint64_t leases_lost_ = 0;
    long long copy_revision_ = 0;
    bool leaving_ = false;
    std::shared_ptr<bool> alive_;
};

} // namespace kv
