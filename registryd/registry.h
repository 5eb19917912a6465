// Registry: the GenServer of the guide. It owns every bucketd child and is
// the only source of truth about them, in exactly two indexes changed
// together, in admit() and erase() only: name -> bucket, and id -> name
// (the guide's monitor refs: an id is never reused, so a callback that
// names its bucket by id can never reach another bucket of the same name).
// Ready buckets are also published in the name table, a read-only copy for
// clients.
//
// It monitors its buckets and is not linked to them: a bucket's exit is an
// event (pidfd readable), handled by reaping it with waitid(P_PIDFD),
// removing its name and whatever it left behind. Every event goes through
// dispatch(), which asks the lifecycle table (bucket.h) what to do. Nothing
// here blocks.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>

#include "asio.h"
#include "bucket.h"
#include "cluster.h"
#include "exit_history.h"
#include "name_table.h"
#include "placement.h"
#include "resp_server.h"
#include "run_dir.h"
#include "server_config.h"
#include "supervision.h"

namespace kv {

struct RegistryOptions {
    std::string instance;      // this registryd's instance id (new_instance_id)
    std::string names_segment; // where to create the name table (new_segment_name), published beforehand
    std::string bucketd_path;
    std::size_t max_buckets = 1024;
    std::size_t bucket_size = 256 * 1024 * 1024; // reserved, not used: pages are taken when touched
    std::chrono::milliseconds ready_timeout { 5000 };
    std::chrono::milliseconds stop_grace { 2000 };
    bool debug_command_enabled = false;
    std::size_t history_size = 1000; // exits HISTORY keeps (--history-size); 0: none
    SupervisionOptions supervision;  // restart policy, intensity and delay (supervision.h)
    ServerConfig server; // for every bucket's socket
    // Cluster mode (registryd --cluster): names are claimed there before a
    // bucket starts and released when it is gone; other nodes' names are
    // found there. Null outside a cluster. Outlives the registry.
    Cluster* cluster = nullptr;
    // Cluster mode, --placement: where a new name goes (placement.h). With
    // `hash`, a CREATE of a name placed on another node is forwarded to that
    // node's registry over TCP, with `password` (--password-file's).
    Placement placement = Placement::local;
    std::string password;
    // --listen-tcp: each bucket also serves RESP on a TCP port of its own,
    // bound on this host ("127.0.0.1", "[::1]"; a free port each time) by
    // start_process, to clients that AUTH with the password registryd hands
    // down in `password_fd` (password_file.h). Empty: no TCP.
    std::string tcp_host;
    // --advertise-address: the host each bucket's address names (CREATE,
    // LOOKUP, the cluster's copy) in place of `tcp_host`, which may be a
    // wildcard no other machine can connect to. Empty: `tcp_host`.
    std::string tcp_advertised_host;
    int password_fd = -1;
    // Called (on the loop) after a bucket is added or removed: registryd's
    // STATUS= for systemd follows size() through it.
    std::function<void(std::size_t buckets)> on_size_change;
};

// What INFO's registry section counts, since registryd started. An exit is
// counted in exactly one of the three `exits_` by how it ended (waitid's
// si_code), and may also be one of `exits_stopped` and `exits_before_ready`.
struct RegistryCounters {
    std::uint64_t buckets_created = 0;      // buckets spawned (a CREATE of an existing name spawns none)
    std::uint64_t exits = 0;                // buckets reaped, whatever the reason
    std::uint64_t exits_status_zero = 0;    // "exited with status 0"
    std::uint64_t exits_status_nonzero = 0; // "exited with status N", N not 0
    std::uint64_t exits_signal = 0;         // "killed by SIG..." (kill -9, a crash, the stop grace period's SIGKILL)
    std::uint64_t exits_stopped = 0;        // registryd had asked it to stop: STOP, or registryd's own shutdown
    std::uint64_t exits_before_ready = 0;   // it exited while starting, never ready and not stopped (CREATE answered an error)
    std::uint64_t restarts = 0;             // exits followed by a restart of the same name
    std::uint64_t given_up = 0;             // exits that called for a restart the intensity refused
    // --placement hash: CREATEs forwarded to the node their name is placed
    // on (whatever that node answered: a name it or a third node had
    // already counts too), and those made here instead because that node
    // could not be reached.
    std::uint64_t placements_forwarded = 0;
    std::uint64_t placements_failed = 0;
};

// registryd's own life: it takes CREATE until shutdown(), then stops every
// bucket and refuses new ones until it exits.
enum class RegistryState { running, shutting_down };

class Registry {
public:
    // `dir` outlives the registry: every file it makes is made relative to it.
    // The name table is created at once, and flock(2)ed for the registry's
    // whole life: that lock is how a later registryd tells a live instance
    // from a dead one (registryd/leftovers.h). Throws if either fails.
    Registry(asio::io_context& io, const RunDir& dir, RegistryOptions options);
    ~Registry();
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;

    // Each call answers through `responder` exactly once, now or later.
    // CREATE replies once the bucket is ready (or with why it never was);
    // an existing name gets the existing bucket (an error if `policy` is
    // given and is not that bucket's). No policy: --restart's.
    // `keep`: KEEP, the data survives a restart when it is provably intact;
    // only with a policy that restarts. `here`: on this node, whatever
    // --placement says (how a forwarded CREATE comes).
    void create(const std::string& name, std::optional<RestartPolicy> policy, bool keep, bool here, const Responder& responder);
    // Replies with the bucket, waiting for it if it is still starting or
    // restarting.
    void lookup(const std::string& name, const Responder& responder);
    void list(const Responder& responder) const;
    // SIGTERM now, SIGKILL after the grace period; replies once the name is gone.
    void stop(const std::string& name, const Responder& responder);
    // Replies when the bucket exits, with the reason.
    void monitor(const std::string& name, const Responder& responder);
    // The `count` newest exits (all that are kept if there are fewer), newest first.
    void history(std::size_t count, const Responder& responder) const;

    // Stops every bucket and calls `done` once all are reaped.
    void shutdown(std::function<void()> done);

    // Cluster mode. The cluster's copy of `name` changed: answers the calls
    // waiting for another node's bucket to be ready.
    void cluster_name_changed(const std::string& name);
    // The lease was lost and replaced: claims every name of ours again; a
    // name another node took meanwhile is stopped here.
    void reclaim_all();
    void reclaim(Bucket& bucket);
    // The lease was confirmed: moves the write fence of every bucket whose
    // claim was made under it (README "Cluster": fencing).
    void extend_fences();

    std::size_t size() const { return buckets_.size(); }
    RegistryState state() const { return state_; }
    Placement placement() const { return options_.placement; }
    const RegistryCounters& counters() const { return counters_; }
    const ExitHistory& exit_history() const { return history_; }

private:
    // Carries out what the lifecycle table (bucket_step) says for `event`;
    // `message` is the readiness pipe's line, `reason` the exit's.
    void dispatch(Bucket& bucket, BucketEvent event, const std::string& message = {}, const ExitReason& reason = {});
    // Makes the bucket's segment and socket and spawns its process, then
    // watches it; the error's text if any step failed (nothing is left then).
    std::optional<std::string> start_process(Bucket& bucket);
    // What follows a reaped exit: a restart, giving up, or removal.
    void after_exit(Bucket& bucket, BucketState was, const ExitReason& reason);
    // The name stays, under a new id; the process starts after the delay.
    void restart(Bucket& bucket, BucketState was, const ExitReason& reason);
    void watch_exit(Bucket& bucket);
    void watch_ready(Bucket& bucket);
    void wait_for_readiness(Bucket& bucket);
    // Runs `event` when `timer` expires, unless it was cancelled.
    void arm_timer(Bucket& bucket, std::chrono::milliseconds after, BucketEvent event);
    void on_readiness(Bucket& bucket);
    void on_bucket_exit(Bucket& bucket);
    void send_signal(Bucket& bucket, int signal);
    // SIGKILL to the bucket and everything left in its process group (it
    // runs in a session of its own). Only ever called before the bucket is
    // reaped: until then its pid, which is also the group's id, cannot be
    // reused, so no unrelated process can be hit.
    void kill_group(Bucket& bucket);
    // Registers a call waiting on `bucket`; forgotten if its client hangs up.
    void add_waiter(Bucket& bucket, Bucket::Waiters Bucket::*list, const Responder& responder);
    // Removes the bucket from both indexes, its segment and socket from the
    // system, and answers everyone waiting on it. `was` is the state it
    // exited from; `gave_up`, why it is not restarted although its policy
    // asked for it.
    void remove(Bucket& bucket, BucketState was, const ExitReason& reason, const std::string& gave_up = {});
    // Counts an exit, logs it and keeps it in HISTORY, with what follows it.
    void record_exit(const Bucket& bucket, BucketState was, const ExitReason& reason, const std::string& outcome);
    // Erases the bucket and gives everyone waiting on it their answer.
    void retire(Bucket& bucket, const std::string& monitor_reply, const std::string& create_error);
    // The only places the two indexes change.
    Bucket& admit(const std::string& name, unsigned long long id);
    void erase(Bucket& bucket);
    Bucket* find(const std::string& name);
    // The stale-callback guard, the only one: every timer, pipe, pidfd and
    // hangup callback names its bucket by id and runs only if this finds it.
    Bucket* find(unsigned long long id);
    // Wraps `handler(Bucket&)` into a callback for an asynchronous wait on
    // `bucket`: it does nothing once the wait was cancelled or the bucket
    // is gone.
    template <class Handler>
    auto guarded(const Bucket& bucket, Handler handler);

    // The LIMIT or BUSY reply to a CREATE that would start a bucket now, if any.
    std::optional<std::string> refusal_of_new_bucket(const std::string& name) const;
    // --placement hash: the node a new name goes to ("" for this one).
    std::string placed_node(const std::string& name) const;
    // CREATE forwarded to `node`'s registry, its answer relayed; made here
    // if that node cannot be reached.
    void create_placed(const std::string& name, const std::string& node, std::optional<RestartPolicy> policy, bool keep,
        const Responder& responder);
    // Cluster mode: CREATE of a name no bucket here has claims it first.
    void create_claimed(const std::string& name, RestartPolicy policy, bool keep, const Responder& responder);
    void on_claim(const std::string& name, const Cluster::Claim& claim);
    // What the cluster is told about one of our buckets.
    ClusterBucket cluster_entry(const Bucket& bucket) const;
    void release_claim(Bucket& bucket);
    // The fence's deadline for `bucket` now: the lease's validity if its
    // claim stands under the current lease, else a time already past; 0
    // outside a cluster.
    std::int64_t write_deadline(const Bucket& bucket) const;
    // LOOKUP or CREATE of another node's bucket: answered now if it is
    // ready, else once it is (or is gone).
    // `as_of`: the etcd revision `entry` was read at.
    void answer_remote(const ClusterBucket& entry, long long as_of, bool create, const Responder& responder);
    BucketRecord record_of(const Bucket& bucket) const;
    std::string bucket_reply(const Bucket& bucket, resp::Protocol protocol) const;

    asio::io_context& io_;
    const RunDir& dir_;
    RegistryOptions options_;
    unsigned long long next_id_ = 1;
    std::map<std::string, Bucket> buckets_;           // name -> bucket
    std::unordered_map<unsigned long long, std::string> by_id_; // id -> name
    // name -> bucket again, published read-only for clients (the guide's ETS
    // table): written only where buckets_ changes, just before callers hear.
    NameTableWriter names_;
    RegistryState state_ = RegistryState::running;
    std::function<void()> on_empty_; // shutdown()'s `done`, called once the last bucket is gone
    RegistryCounters counters_;
    ExitHistory history_;

    // Cluster mode: CREATE calls waiting for their name's claim, by name
    // (the first call's policy and KEEP decide), and calls waiting for
    // another node's bucket to be ready (true: a CREATE).
    struct PendingClaim {
        RestartPolicy policy = RestartPolicy::temporary;
        bool keep = false;
        Bucket::Waiters waiters;
    };
    std::map<std::string, PendingClaim> claiming_;
    struct RemoteWaiter {
        Responder responder;
        bool create = false;
    };
    std::map<std::string, std::map<std::uint64_t, RemoteWaiter>> remote_waiters_;
};

} // namespace kv
