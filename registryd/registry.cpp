#include "registry.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "bucket_name.h"
#include "error_code.h"
#include "forwarded_call.h"
#include "log.h"
#include "pidfd.h"
#include "run_dir.h"
#include "socket_file.h"
#include "shared_table.h"
#include "spawn.h"
#include "system_error.h"
#include "tcp_listener.h"

namespace kv {

namespace {

std::string describe(const Bucket& bucket)
{
    return "bucket " + printable(bucket.name) + " (pid " + std::to_string(bucket.pid) + ", id "
        + std::to_string(bucket.id) + ")";
}

// One entry of LIST: the record and the figures.
void append_list_entry(std::string& out, const BucketRecord& record, const Bucket& bucket, resp::Protocol protocol)
{
    const auto table = read_table_stats(bucket.segment.fd.get()).value_or(TableStats {});
    BucketStats stats;
    stats.state = to_string(bucket.state);
    // A restarting bucket has no process (and no start time): no uptime.
    stats.uptime_ms = bucket.state == BucketState::restarting
        ? 0
        : std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - bucket.started).count();
    stats.keys = table.keys;
    stats.bytes = table.bytes;
    stats.monitors = bucket.monitors.size();
    stats.restart = to_string(bucket.supervision.policy);
    stats.keep = bucket.supervision.keep;
    stats.restarts = bucket.supervision.restarts;
    stats.last_exit = bucket.supervision.last_exit;
    append_resp(out, record, &stats, protocol);
}

// MONITOR's answer: the exit, and what follows it, as a simple string.
std::string monitor_reply(const std::string& text)
{
    std::string out;
    resp::append_simple(out, text);
    return out;
}

std::string error_reply(ErrorCode code, const std::string& message)
{
    std::string out;
    append_error(out, code, message);
    return out;
}

long long unix_ms(std::chrono::system_clock::time_point time)
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
}

std::string not_found(const std::string& name) { return error_reply(ErrorCode::not_found, "no bucket named " + printable(name)); }

// Room for every bucket's entry (name, pid, id, two paths) and the index.
std::size_t name_table_size(std::size_t max_buckets)
{
    return std::max<std::size_t>(16 << 20, max_buckets * 2048 + (1 << 20));
}

} // namespace

BucketRecord Registry::record_of(const Bucket& bucket) const
{
    BucketRecord record { bucket.name, bucket.pid, bucket.id, bucket.socket.path(), bucket.segment.name, 0, {}, bucket.tcp_address };
    if (options_.cluster)
        record.node = options_.cluster->options().node;
    return record;
}

// The reply to CREATE and LOOKUP (bucket_record.h), in the asker's protocol.
std::string Registry::bucket_reply(const Bucket& bucket, resp::Protocol protocol) const
{
    std::string out;
    append_resp(out, record_of(bucket), nullptr, protocol);
    return out;
}

Registry::Registry(asio::io_context& io, const RunDir& dir, RegistryOptions options)
    : io_(io)
    , dir_(dir)
    , options_(std::move(options))
    , names_(options_.names_segment, name_table_size(options_.max_buckets))
    , history_(options_.history_size)
{
    // Blocking: another registryd sweeping for dead instances may hold it
    // for a moment, while it finds that we are running.
    int locked;
    while ((locked = ::flock(names_.descriptor(), LOCK_EX)) == -1 && errno == EINTR) {
    }
    check(locked, "unable to lock name table", options_.names_segment);
    names_.publish_alive();
}

Registry::~Registry()
{
    // Normally shutdown() has emptied us. If not (an exception unwinding
    // main), leave no child behind: kill and reap each through its pidfd;
    // erasing them removes their segments and sockets.
    for (auto& [name, bucket] : buckets_) {
        if (!bucket.pidfd)
            continue; // restarting: no process
        kill_group(bucket);
        siginfo_t info {};
        ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(bucket.pidfd->native_handle()), &info, WEXITED);
    }
    by_id_.clear();
    buckets_.clear();
}

Bucket* Registry::find(const std::string& name)
{
    auto it = buckets_.find(name);
    return it == buckets_.end() ? nullptr : &it->second;
}

Bucket* Registry::find(unsigned long long id)
{
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : find(it->second);
}

template <class Handler>
auto Registry::guarded(const Bucket& bucket, Handler handler)
{
    return [this, id = bucket.id, handler = std::move(handler)](const boost::system::error_code& error = {}) {
        if (error == asio::error::operation_aborted)
            return;
        if (Bucket* current = find(id))
            handler(*current);
    };
}

Bucket& Registry::admit(const std::string& name, unsigned long long id)
{
    Bucket& bucket = buckets_.try_emplace(name, io_).first->second;
    bucket.name = name;
    bucket.id = id;
    by_id_[id] = name;
    if (options_.on_size_change)
        options_.on_size_change(buckets_.size());
    return bucket;
}

void Registry::erase(Bucket& bucket)
{
    // Erasing the bucket closes its pidfd and pipe, cancels its timer, and
    // removes the segment and socket file registryd made for it (if they
    // are still the ones it made).
    by_id_.erase(bucket.id);
    buckets_.erase(bucket.name);
    if (options_.on_size_change)
        options_.on_size_change(buckets_.size());
}

void Registry::create(const std::string& name, std::optional<RestartPolicy> policy, bool keep, bool here, const Responder& responder)
{
    if (auto reason = bucket_name_error(name)) {
        responder.send(error_reply(ErrorCode::invalid, "invalid bucket name: " + *reason));
        return;
    }
    if (Bucket* existing = find(name)) {
        if ((policy && *policy != existing->supervision.policy) || (keep && !existing->supervision.keep)) {
            responder.send(error_reply(ErrorCode::error, "bucket " + printable(name) + " exists with restart policy "
                + to_string(existing->supervision.policy) + (existing->supervision.keep ? " KEEP" : "") + "; STOP it to create it with another"));
            return;
        }
        switch (existing->state) {
        case BucketState::ready: responder.send(bucket_reply(*existing, responder.protocol())); return;
        case BucketState::starting:
        case BucketState::restarting: add_waiter(*existing, &Bucket::waiting_for_ready, responder); return;
        case BucketState::stopping:
        case BucketState::exited: // never found: erased as it exits
            responder.send(error_reply(ErrorCode::busy, "bucket " + printable(name) + " is stopping; create it again once STOP has replied"));
            return;
        }
    }
    const RestartPolicy chosen = policy.value_or(options_.supervision.default_policy);
    if (keep && chosen == RestartPolicy::temporary) {
        responder.send(error_reply(ErrorCode::error, "unable to create bucket " + printable(name)
            + ": KEEP needs a restart policy that restarts (RESTART transient or RESTART permanent)"));
        return;
    }
    // A name this node is claiming already (a CREATE ... HERE, a passed-over
    // node's name) joins that claim rather than going elsewhere.
    if (!here && options_.placement == Placement::hash && state_ == RegistryState::running && !claiming_.count(name)) {
        if (std::string node = placed_node(name); !node.empty()) {
            create_placed(name, node, policy, keep, responder);
            return;
        }
    }
    if (auto refusal = refusal_of_new_bucket(name)) {
        responder.send(std::move(*refusal));
        return;
    }
    if (options_.cluster) {
        create_claimed(name, chosen, keep, responder);
        return;
    }
    Bucket& bucket = admit(name, next_id_++);
    bucket.supervision.policy = chosen;
    bucket.supervision.keep = keep;
    if (auto error = start_process(bucket)) {
        log_line(LogLevel::warning, "unable to create bucket " + printable(name) + ": " + *error);
        erase(bucket); // its segment and socket file, if made, go with it
        responder.send(error_reply(ErrorCode::error, "unable to create bucket " + printable(name) + ": " + *error));
        return;
    }
    add_waiter(bucket, &Bucket::waiting_for_ready, responder);
    ++counters_.buckets_created;
}

std::optional<std::string> Registry::refusal_of_new_bucket(const std::string& name) const
{
    if (buckets_.size() >= options_.max_buckets)
        return error_reply(ErrorCode::limit, "unable to create bucket " + printable(name) + ": limit of "
            + std::to_string(options_.max_buckets) + " buckets reached (--max-buckets)");
    if (state_ == RegistryState::shutting_down)
        return error_reply(ErrorCode::busy, "unable to create bucket " + printable(name) + ": registryd is shutting down");
    return std::nullopt;
}

std::string Registry::placed_node(const std::string& name) const
{
    // The live nodes a CREATE can be sent to: those registered with a TCP
    // address, and this one, whose own entry the copy may not show yet.
    const std::string& self = options_.cluster->options().node;
    std::vector<std::string> nodes { self };
    for (const auto& [node, entry] : options_.cluster->nodes())
        if (node != self && !entry.address.empty())
            nodes.push_back(node);
    std::string chosen = place(nodes, name);
    return chosen == self ? std::string() : chosen;
}

void Registry::create_placed(const std::string& name, const std::string& node, std::optional<RestartPolicy> policy, bool keep,
    const Responder& responder)
{
    auto it = options_.cluster->nodes().find(node);
    std::vector<std::string> request { "CREATE", name };
    if (policy) {
        request.push_back("RESTART");
        request.push_back(to_string(*policy));
    }
    if (keep)
        request.push_back("KEEP");
    request.push_back("HERE"); // placed there: never forwarded again, whatever that node's copy says
    ++counters_.placements_forwarded;
    // Its CREATE waits for readiness there as ours would here; the call
    // gives it that, and the connection's round trips on top.
    ForwardedCall call { it->second.address, options_.password, std::move(request), options_.ready_timeout + std::chrono::seconds(2) };
    forward_call(io_, std::move(call), [this, name, node, policy, keep, responder](std::optional<resp::Value> reply, const std::string& error) {
        if (!reply) {
            // Placement spreads names; it is not what keeps them unique (the
            // claim is): a name whose node cannot be reached is made here.
            ++counters_.placements_failed;
            log_line(LogLevel::warning, "unable to forward CREATE " + printable(name) + " to node " + printable(node)
                + ": " + error + "; creating it here");
            create(name, policy, keep, true, responder);
            return;
        }
        if (reply->is_error()) {
            std::string out;
            resp::append_error(out, reply->text);
            responder.send(std::move(out));
            return;
        }
        // That node's record, as any other node's bucket is shown here: its
        // socket and segment are paths on that machine, not on this one.
        std::optional<BucketRecord> record = decode_bucket_record(*reply);
        if (!record) {
            responder.send(error_reply(ErrorCode::error, "unable to create bucket " + printable(name) + " on node " + printable(node)
                + ": its reply is not a bucket"));
            return;
        }
        // Ours after all (claimed here meanwhile, and found here by that
        // node's claim): answered as a bucket of this node, with its paths.
        if (record->node == options_.cluster->options().node) {
            if (Bucket* local = find(name); local && local->id == record->id) {
                if (local->state == BucketState::ready)
                    responder.send(bucket_reply(*local, responder.protocol()));
                else
                    add_waiter(*local, &Bucket::waiting_for_ready, responder);
                return;
            }
        }
        record->socket.clear();
        record->segment.clear();
        std::string out;
        append_resp(out, *record, nullptr, responder.protocol());
        responder.send(std::move(out));
    });
}

void Registry::create_claimed(const std::string& name, RestartPolicy policy, bool keep, const Responder& responder)
{
    const std::uint64_t connection = responder.connection_id();
    auto [pending, first] = claiming_.try_emplace(name);
    pending->second.waiters.insert_or_assign(connection, responder);
    responder.on_hangup([this, name, connection] {
        if (auto it = claiming_.find(name); it != claiming_.end())
            it->second.waiters.erase(connection);
    });
    if (!first)
        return; // the claim under way answers this call too
    pending->second.policy = policy;
    pending->second.keep = keep;
    ClusterBucket entry;
    entry.name = name;
    entry.node = options_.cluster->options().node; // its address comes once it has one
    entry.restart = to_string(policy);
    entry.keep = keep;
    options_.cluster->claim(entry, [this, name](const Cluster::Claim& claim) { on_claim(name, claim); });
}

void Registry::on_claim(const std::string& name, const Cluster::Claim& claim)
{
    auto it = claiming_.find(name);
    if (it == claiming_.end())
        return;
    PendingClaim pending = std::move(it->second);
    claiming_.erase(it);
    auto answer_all = [&pending](const std::string& reply) {
        for (const auto& [connection, waiter] : pending.waiters)
            waiter.send(reply);
    };
    switch (claim.outcome) {
    case Cluster::Claim::Outcome::failed:
        log_line(LogLevel::warning, "unable to create bucket " + printable(name) + ": unable to claim its name in the cluster: " + claim.error);
        answer_all(error_reply(ErrorCode::cluster_down, "unable to create bucket " + printable(name) + ": unable to claim its name in the cluster: " + claim.error));
        return;
    case Cluster::Claim::Outcome::taken:
        for (const auto& [connection, waiter] : pending.waiters)
            answer_remote(claim.owner, claim.as_of, true, waiter);
        return;
    case Cluster::Claim::Outcome::claimed: break;
    }
    // Ours: the name is claimed cluster-wide. Whatever changed here while
    // the claim was under way is checked again.
    std::optional<std::string> refusal = refusal_of_new_bucket(name);
    if (!refusal && find(name))
        refusal = error_reply(ErrorCode::busy, "bucket " + printable(name) + " is being claimed again; create it once that is done");
    if (refusal) {
        if (!find(name))
            options_.cluster->release(name, claim.owner.revision);
        answer_all(*refusal);
        return;
    }
    Bucket& bucket = admit(name, next_id_++);
    bucket.supervision.policy = pending.policy;
    bucket.supervision.keep = pending.keep;
    bucket.claim = claim.owner.revision;
    bucket.claim_lease = claim.owner.lease;
    if (auto error = start_process(bucket)) {
        log_line(LogLevel::warning, "unable to create bucket " + printable(name) + ": " + *error);
        release_claim(bucket);
        erase(bucket);
        answer_all(error_reply(ErrorCode::error, "unable to create bucket " + printable(name) + ": " + *error));
        return;
    }
    for (const auto& [connection, waiter] : pending.waiters)
        add_waiter(bucket, &Bucket::waiting_for_ready, waiter);
    ++counters_.buckets_created;
}

ClusterBucket Registry::cluster_entry(const Bucket& bucket) const
{
    ClusterBucket entry;
    entry.name = bucket.name;
    entry.node = options_.cluster->options().node;
    entry.address = bucket.tcp_address;
    entry.pid = bucket.state == BucketState::ready ? bucket.pid : -1;
    entry.id = bucket.id;
    entry.state = bucket.state == BucketState::ready ? "ready" : "starting";
    entry.restart = to_string(bucket.supervision.policy);
    entry.keep = bucket.supervision.keep;
    entry.revision = bucket.claim;
    return entry;
}

void Registry::release_claim(Bucket& bucket)
{
    if (options_.cluster && bucket.claim != 0)
        options_.cluster->release(bucket.name, std::exchange(bucket.claim, 0));
}

void Registry::answer_remote(const ClusterBucket& read, long long as_of, bool create, const Responder& responder)
{
    // The transaction's read may be older than the copy (its watch event
    // came first): then the copy says what became of the bucket since.
    const ClusterBucket* copied = options_.cluster->find(read.name);
    if (options_.cluster->copy_revision() >= as_of) {
        if (!copied) {
            responder.send(create ? error_reply(ErrorCode::error, "bucket " + printable(read.name) + " exited on its node before it was ready")
                                  : not_found(read.name));
            return;
        }
    } else {
        copied = nullptr;
    }
    const ClusterBucket& entry = copied ? *copied : read;
    if (entry.state == "ready") {
        BucketRecord record { entry.name, entry.pid, entry.id, {}, {}, 0, entry.node, entry.address };
        std::string out;
        append_resp(out, record, nullptr, responder.protocol());
        responder.send(std::move(out));
        return;
    }
    const std::uint64_t connection = responder.connection_id();
    remote_waiters_[entry.name].insert_or_assign(connection, RemoteWaiter { responder, create });
    auto forget = [this, name = entry.name, connection] {
        auto it = remote_waiters_.find(name);
        if (it == remote_waiters_.end())
            return false;
        const bool found = it->second.erase(connection) > 0;
        if (it->second.empty())
            remote_waiters_.erase(it);
        return found;
    };
    responder.on_hangup(forget);
    // Another node's bucket that never becomes ready (its node died, or
    // etcd never heard it was ready) is not waited for longer than one of
    // ours would be.
    auto timer = std::make_shared<asio::steady_timer>(io_, options_.ready_timeout);
    timer->async_wait([timer, forget, responder, name = entry.name, node = entry.node](const boost::system::error_code&) {
        if (forget())
            responder.send(error_reply(ErrorCode::busy, "bucket " + printable(name) + " on node " + printable(node) + " is still starting; ask again"));
    });
}

void Registry::cluster_name_changed(const std::string& name)
{
    auto it = remote_waiters_.find(name);
    if (it == remote_waiters_.end())
        return;
    const ClusterBucket* entry = options_.cluster->find(name);
    if (entry && entry->state != "ready")
        return; // still starting: keep waiting
    auto waiters = std::move(it->second);
    remote_waiters_.erase(it);
    // Ready or gone: answer_remote, reading the copy as of now, says which.
    ClusterBucket gone;
    gone.name = name;
    for (const auto& [connection, waiter] : waiters)
        answer_remote(entry ? *entry : gone, options_.cluster->copy_revision(), waiter.create, waiter.responder);
}

std::int64_t Registry::write_deadline(const Bucket& bucket) const
{
    if (!options_.cluster)
        return 0;
    if (bucket.claim == 0 || bucket.claim_lease != options_.cluster->lease())
        return 1; // past: not (or no longer surely) this node's
    return options_.cluster->valid_until_ns();
}

void Registry::extend_fences()
{
    for (auto& [name, bucket] : buckets_) {
        if (bucket.claim != 0 && bucket.claim_lease != options_.cluster->lease()) {
            // Claimed under a lease since lost (a claim whose reply came
            // after the loss, a reclaim that failed): claimed again now.
            reclaim(bucket);
            continue;
        }
        if (bucket.segment.fd && bucket.claim_lease == options_.cluster->lease())
            set_write_deadline(bucket.segment.fd.get(), write_deadline(bucket));
    }
}

void Registry::reclaim_all()
{
    for (auto& [name, bucket] : buckets_)
        reclaim(bucket);
}

void Registry::reclaim(Bucket& bucket)
{
    if (bucket.state == BucketState::stopping || bucket.claim == 0 || bucket.reclaiming)
        return;
    bucket.reclaiming = true;
    // Found again by name and by the lease its claim was under, not by id:
    // a restart meanwhile (a new id) carries the same claim and is still ours.
    options_.cluster->reclaim(cluster_entry(bucket), [this, name = bucket.name, lost = bucket.claim_lease](const Cluster::Claim& claim) {
        Bucket* bucket = find(name);
        if (!bucket || bucket->claim_lease != lost) {
            // Gone meanwhile: the claim made for it is released, unless a
            // bucket of the name made since holds that very claim.
            if (claim.outcome == Cluster::Claim::Outcome::claimed && !(bucket && bucket->claim == claim.owner.revision))
                options_.cluster->release(claim.owner.name, claim.owner.revision);
            return;
        }
        bucket->reclaiming = false;
        switch (claim.outcome) {
        case Cluster::Claim::Outcome::claimed:
            bucket->claim = claim.owner.revision;
            bucket->claim_lease = claim.owner.lease;
            if (bucket->segment.fd)
                set_write_deadline(bucket->segment.fd.get(), write_deadline(*bucket)); // writes resume
            // The claim put the bucket as it was when the claim was sent; a
            // restart meanwhile (a new pid, id and address) was published
            // under the old claim, which etcd refused: the name's value is
            // brought up to date under the new one.
            if (bucket->id != claim.owner.id || bucket->tcp_address != claim.owner.address
                || (bucket->state == BucketState::ready) != (claim.owner.state == "ready"))
                options_.cluster->update(cluster_entry(*bucket));
            log_line(LogLevel::notice, describe(*bucket) + " claimed again in the cluster");
            return;
        case Cluster::Claim::Outcome::taken:
            log_line(LogLevel::warning, describe(*bucket) + ": its name was taken by node " + printable(claim.owner.node)
                + " while this node's lease was lost; stopping this node's copy");
            bucket->claim = 0; // not ours to release
            dispatch(*bucket, BucketEvent::stop_requested);
            return;
        case Cluster::Claim::Outcome::failed:
            // Fenced meanwhile; tried again with the next keepalive (extend_fences).
            log_line(LogLevel::warning, describe(*bucket) + ": unable to claim its name again (retried): " + claim.error);
            return;
        }
    });
}

std::optional<std::string> Registry::start_process(Bucket& bucket)
{
    BucketSegment segment;
    SocketFile socket;
    TcpListener tcp; // --listen-tcp
    SpawnedBucket spawned;
    // KEEP: the segment of the process before, which the new one adopts.
    const bool kept = static_cast<bool>(bucket.segment.fd);
    if (kept) {
        segment.name = std::move(bucket.segment.name);
        segment.fd = std::move(bucket.segment.fd);
    }
    try {
        // What the bucket needs is made here, by registryd, so registryd
        // alone creates and removes files: the bucket inherits descriptors.
        if (!kept) {
            segment.name = new_segment_name(options_.instance, "b" + std::to_string(bucket.id));
            segment.fd = create_segment(segment.name);
        }
        const std::string socket_name = bucket_socket_name(options_.instance, bucket.id);
        socket = SocketFile::listen(dir_.buckets_fd(), socket_name,
            dir_.path() + "/" + buckets_directory_name + "/" + socket_name, options_.server.admits_others() ? 0666 : 0600);

        BucketLaunch launch;
        launch.bucketd_path = options_.bucketd_path;
        launch.name = bucket.name;
        launch.environment.instance = options_.instance;
        launch.environment.segment_name = segment.name;
        launch.environment.segment_fd = segment.fd.get();
        launch.environment.socket_path = socket.path();
        launch.environment.listen_fd = socket.listener();
        launch.environment.bucket_size = options_.bucket_size;
        launch.environment.server_config = options_.server;
        launch.environment.debug_command_enabled = options_.debug_command_enabled;
        launch.environment.log_level = log_level();
        launch.environment.keep_data = kept;
        launch.environment.write_deadline_ns = write_deadline(bucket);
        if (!options_.tcp_host.empty()) {
            tcp = listen_tcp(options_.tcp_host + ":0");
            launch.environment.tcp_listen_fd = tcp.fd.get();
            launch.environment.tcp_address = tcp.address;
            launch.environment.password_fd = options_.password_fd;
        }
        spawned = spawn_bucket(launch);
    } catch (const std::exception& error) {
        return std::string(error.what()); // the segment and the socket file go with their owners
    }
    socket.take_listener().reset(); // the bucket has its copy; ours would only keep clients waiting
    tcp.fd.reset();                 // likewise

    // Every step that can fail is done: the bucket has a process.
    bucket.pid = spawned.pid;
    bucket.segment.name = std::move(segment.name);
    bucket.segment.fd = std::move(segment.fd);
    bucket.socket = std::move(socket);
    bucket.tcp_address = options_.tcp_advertised_host.empty() ? std::move(tcp.address) : with_host(options_.tcp_advertised_host, tcp.address);
    bucket.started = std::chrono::steady_clock::now();
    bucket.started_at = std::chrono::system_clock::now();
    bucket.state = BucketState::starting;
    bucket.pidfd = std::make_unique<asio::posix::stream_descriptor>(io_, spawned.pidfd.release());
    bucket.ready_pipe = std::make_unique<asio::posix::stream_descriptor>(io_, spawned.ready_pipe.release());

    log_line(describe(bucket) + " starting" + (bucket.supervision.restarts ? " (restart " + std::to_string(bucket.supervision.restarts) + ")" : ""));
    watch_exit(bucket);
    watch_ready(bucket);
    return std::nullopt;
}

void Registry::add_waiter(Bucket& bucket, Bucket::Waiters Bucket::*list, const Responder& responder)
{
    const std::uint64_t connection = responder.connection_id();
    (bucket.*list).insert_or_assign(connection, responder);
    responder.on_hangup(guarded(bucket, [list, connection](Bucket& waited_on) { (waited_on.*list).erase(connection); }));
}

void Registry::watch_exit(Bucket& bucket)
{
    bucket.pidfd->async_wait(asio::posix::stream_descriptor::wait_read,
        guarded(bucket, [this](Bucket& exited) { on_bucket_exit(exited); }));
    // The reactor is edge-triggered: an exit between the spawn and the
    // arming above would never be reported. Look once, without reaping.
    siginfo_t info {};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(bucket.pidfd->native_handle()), &info,
            WEXITED | WNOHANG | WNOWAIT) == 0
        && info.si_pid != 0)
        asio::post(io_, guarded(bucket, [this](Bucket& exited) { on_bucket_exit(exited); }));
}

void Registry::watch_ready(Bucket& bucket)
{
    wait_for_readiness(bucket);
    arm_timer(bucket, options_.ready_timeout, BucketEvent::ready_timeout);
}

void Registry::arm_timer(Bucket& bucket, std::chrono::milliseconds after, BucketEvent event)
{
    bucket.timer.cancel();
    bucket.timer.expires_after(after);
    bucket.timer.async_wait(guarded(bucket, [this, event](Bucket& timed) { dispatch(timed, event); }));
}

void Registry::wait_for_readiness(Bucket& bucket)
{
    bucket.ready_pipe->async_wait(asio::posix::stream_descriptor::wait_read,
        guarded(bucket, [this](Bucket& readable) { on_readiness(readable); }));
}

namespace {

// What the bucket wrote on its readiness pipe so far, and what it means.
Readiness read_readiness(Bucket& bucket, std::string& why)
{
    return kv::read_readiness(bucket.ready_pipe->native_handle(), bucket.ready_text, why);
}

} // namespace

void Registry::on_readiness(Bucket& bucket)
{
    if (!bucket.ready_pipe)
        return; // readable as the pipe was closed: its line was read already
    std::string message;
    const Readiness readiness = read_readiness(bucket, message);
    if (readiness == Readiness::waiting) {
        wait_for_readiness(bucket);
        return;
    }
    bucket.ready_pipe.reset();
    switch (readiness) {
    case Readiness::waiting: break;
    case Readiness::failed: dispatch(bucket, BucketEvent::failure_line, message); break;
    case Readiness::closed: dispatch(bucket, BucketEvent::pipe_closed); break;
    case Readiness::ready: dispatch(bucket, BucketEvent::ready_line); break;
    }
}

void Registry::on_bucket_exit(Bucket& bucket)
{
    // Look without reaping: until it is reaped, the exited bucket is a zombie
    // that keeps its pid, and so its process group's id, from being reused.
    siginfo_t info {};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(bucket.pidfd->native_handle()), &info,
            WEXITED | WNOHANG | WNOWAIT) == -1) {
        log_line(LogLevel::error, describe(bucket) + ": unable to wait for it: " + std::strerror(errno));
        dispatch(bucket, BucketEvent::wait_failed, {}, ExitReason { 0, 0 });
        return;
    }
    if (info.si_pid == 0) {
        // Readable without an exit should not happen; say so and keep watching.
        log_line(LogLevel::warning, describe(bucket) + ": pidfd readable but the process has not exited; still watching");
        watch_exit(bucket);
        return;
    }
    dispatch(bucket, BucketEvent::exited, {}, ExitReason { info.si_code, info.si_status });
}

void Registry::dispatch(Bucket& bucket, BucketEvent event, const std::string& message, const ExitReason& reason)
{
    const BucketStep step = bucket_step(bucket.state, event);
    const BucketState was = bucket.state;
    switch (step.transition) {
    case BucketTransition::publish:
        // Published before anyone hears CREATE's reply, as the guide's
        // registry inserts into ETS before it replies.
        if (!names_.publish(bucket.name, record_of(bucket))) {
            dispatch(bucket, BucketEvent::publish_failed);
            return;
        }
        bucket.timer.cancel();
        bucket.state = step.next;
        if (options_.cluster && bucket.claim != 0) {
            options_.cluster->update(cluster_entry(bucket));
            // A keepalive confirmed while the bucket formatted its table could
            // not move its fence (no table yet): it is moved now.
            set_write_deadline(bucket.segment.fd.get(), write_deadline(bucket));
        }
        log_line(describe(bucket) + " ready");
        for (const auto& [connection, waiter] : std::exchange(bucket.waiting_for_ready, {}))
            waiter.send(bucket_reply(bucket, waiter.protocol()));
        return;

    case BucketTransition::note_failure:
        // It says why and exits; its exit, seen on the pidfd, answers the
        // callers (and the ready timeout still holds if it does not exit).
        if (bucket.failure.empty())
            bucket.failure = "could not start: " + message;
        return;

    case BucketTransition::kill_silent:
        // Killed already (the ready timeout, a STOP) or it closed the pipe
        // itself; the first reason registryd knew is the one it reports.
        if (bucket.failure.empty()) {
            bucket.failure = "closed its readiness pipe without writing a newline";
            kill_group(bucket);
        }
        return;

    case BucketTransition::kill_timed_out:
        bucket.failure = "did not become ready within " + std::to_string(options_.ready_timeout.count()) + " ms";
        log_line(LogLevel::warning, describe(bucket) + " " + bucket.failure + "; killing it");
        kill_group(bucket);
        return;

    case BucketTransition::kill_unpublished:
        bucket.failure = "could not be published: the name table is full";
        log_line(LogLevel::warning, describe(bucket) + " " + bucket.failure + "; killing it");
        kill_group(bucket);
        return;

    case BucketTransition::begin_stop:
        bucket.state = step.next;
        log_line(describe(bucket) + " stopping");
        send_signal(bucket, SIGTERM);
        arm_timer(bucket, options_.stop_grace, BucketEvent::grace_expired);
        return;

    case BucketTransition::kill_stubborn:
        bucket.failure = "did not stop within " + std::to_string(options_.stop_grace.count()) + " ms of SIGTERM";
        log_line(LogLevel::warning, describe(bucket) + " " + bucket.failure + "; killing it");
        kill_group(bucket);
        return;

    case BucketTransition::reap: {
        // Its last words (why it could not start) are in the pipe already: it
        // wrote them before it exited. Read what is there and stop waiting: a
        // descendant may hold the pipe open forever.
        if (bucket.ready_pipe) {
            std::string last_words;
            if (read_readiness(bucket, last_words) == Readiness::failed && bucket.failure.empty())
                bucket.failure = "could not start: " + last_words;
            bucket.ready_pipe.reset();
        }
        bucket.state = step.next;
        // The name goes first, so no client is ever given a pid that is free;
        // then whatever it left in its process group; then the reap.
        names_.withdraw(bucket.name);
        kill_group(bucket);
        siginfo_t info {};
        ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(bucket.pidfd->native_handle()), &info, WEXITED | WNOHANG);
        after_exit(bucket, was, reason);
        return;
    }

    case BucketTransition::forget:
        bucket.state = step.next;
        remove(bucket, was, reason);
        return;

    case BucketTransition::respawn:
        if (auto error = start_process(bucket)) {
            // As a child whose restart fails in OTP: nothing is left to supervise.
            const std::string why = "gave up: unable to restart: " + *error;
            log_line(LogLevel::error, describe(bucket) + " " + why);
            ++counters_.given_up;
            retire(bucket, monitor_reply(why), error_reply(ErrorCode::error, "bucket " + printable(bucket.name) + " " + why));
        }
        return;

    case BucketTransition::cancel_restart: {
        bucket.state = step.next;
        log_line(describe(bucket) + " stopped while waiting to restart");
        retire(bucket, monitor_reply("stopped before its restart"), error_reply(ErrorCode::error, "bucket " + printable(bucket.name) + " was stopped before its restart"));
        return;
    }

    case BucketTransition::ignore_late_ready:
        log_line(LogLevel::warning, describe(bucket) + ": readiness reported while " + to_string(bucket.state) + "; ignored");
        return;

    case BucketTransition::ignore:
        return;
    }
}

void Registry::send_signal(Bucket& bucket, int signal)
{
    // Through the pidfd: the pid cannot have been reused, whatever happened.
    if (::pidfd_send_signal(bucket.pidfd->native_handle(), signal, nullptr, 0) == -1 && errno != ESRCH)
        log_line(LogLevel::error, describe(bucket) + ": unable to send " + signal_name(signal) + ": " + std::strerror(errno));
}

void Registry::kill_group(Bucket& bucket)
{
    if (bucket.pid > 1 && ::kill(-bucket.pid, SIGKILL) == -1 && errno != ESRCH)
        log_line(LogLevel::error, describe(bucket) + ": unable to kill its process group: " + std::strerror(errno));
    send_signal(bucket, SIGKILL); // in case it left its group
}

void Registry::lookup(const std::string& name, const Responder& responder)
{
    Bucket* bucket = find(name);
    if (!bucket) {
        const ClusterBucket* remote = options_.cluster ? options_.cluster->find(name) : nullptr;
        if (remote && remote->node != options_.cluster->options().node)
            answer_remote(*remote, options_.cluster->copy_revision(), false, responder);
        else
            responder.send(not_found(name));
        return;
    }
    if (bucket->state == BucketState::starting || bucket->state == BucketState::restarting)
        add_waiter(*bucket, &Bucket::waiting_for_ready, responder);
    else
        responder.send(bucket_reply(*bucket, responder.protocol()));
}

void Registry::list(const Responder& responder) const
{
    std::string out;
    resp::append_array_header(out, buckets_.size());
    for (const auto& [name, bucket] : buckets_)
        append_list_entry(out, record_of(bucket), bucket, responder.protocol());
    responder.send(std::move(out));
}

void Registry::stop(const std::string& name, const Responder& responder)
{
    Bucket* bucket = find(name);
    if (!bucket) {
        responder.send(not_found(name));
        return;
    }
    add_waiter(*bucket, &Bucket::waiting_for_stop, responder);
    dispatch(*bucket, BucketEvent::stop_requested);
}

void Registry::monitor(const std::string& name, const Responder& responder)
{
    Bucket* bucket = find(name);
    if (!bucket) {
        responder.send(not_found(name));
        return;
    }
    add_waiter(*bucket, &Bucket::monitors, responder);
}

void Registry::history(std::size_t count, const Responder& responder) const
{
    count = std::min(count, history_.size());
    std::string out;
    resp::append_array_header(out, count);
    for (std::size_t i = 0; i < count; ++i)
        append_resp(out, history_[i], responder.protocol());
    responder.send(std::move(out));
}

void Registry::after_exit(Bucket& bucket, BucketState was, const ExitReason& reason)
{
    const bool first_start = was == BucketState::starting && bucket.supervision.restarts == 0;
    if (state_ == RegistryState::shutting_down
        || !wants_restart(bucket.supervision.policy, was == BucketState::stopping, first_start, reason.clean())) {
        remove(bucket, was, reason);
        return;
    }
    if (!bucket.supervision.intensity.admit(std::chrono::steady_clock::now(), options_.supervision)) {
        remove(bucket, was, reason,
            gave_up_text(bucket.supervision.intensity.recent(), options_.supervision.max_seconds, reason.describe()));
        return;
    }
    restart(bucket, was, reason);
}

void Registry::restart(Bucket& bucket, BucketState was, const ExitReason& reason)
{
    const std::string why = reason.describe();
    names_.withdraw(bucket.name); // already gone when the exit was seen
    record_exit(bucket, was, reason, "restarting");
    ++counters_.restarts;

    // A restart starts a new process under the same name: everything else
    // of the old one (its id, segment, socket) goes with erase().
    const std::string name = bucket.name;
    Bucket::Supervision supervision = std::move(bucket.supervision);
    ++supervision.restarts;
    supervision.last_exit = why;
    // KEEP: the segment stays, held here between the two processes. Its
    // readers are told the table is gone (its writer is), as for any exit;
    // the new bucket marks it alive again once it has adopted it.
    BucketSegment kept_segment;
    if (supervision.keep && bucket.segment.fd) {
        mark_table_gone(bucket.segment.fd.get());
        kept_segment.name = std::move(bucket.segment.name);
        kept_segment.fd = std::move(bucket.segment.fd);
    }
    auto waiting_for_ready = std::move(bucket.waiting_for_ready);
    auto monitors = std::move(bucket.monitors);
    const std::string failure = bucket.failure;
    const long long claim = bucket.claim;
    const long long claim_lease = bucket.claim_lease;
    const bool reclaiming = bucket.reclaiming;
    erase(bucket);

    // Callers waiting for a restarted process that died before it was ready
    // are answered now, with why: carried again, they could wait through
    // restart after restart (each within the intensity) for ever.
    if (was == BucketState::starting && !waiting_for_ready.empty()) {
        const std::string error = error_reply(ErrorCode::error, "bucket " + printable(name) + " "
            + (failure.empty() ? why : failure + "; " + why) + " before it was ready; restarting");
        for (const auto& [connection, waiter] : std::exchange(waiting_for_ready, {}))
            waiter.send(error);
    }
    Bucket& next = admit(name, next_id_++);
    next.claim = claim; // the name stays this node's
    next.claim_lease = claim_lease;
    next.reclaiming = reclaiming;
    next.supervision = std::move(supervision);
    next.segment.name = std::move(kept_segment.name);
    next.segment.fd = std::move(kept_segment.fd);
    next.state = BucketState::restarting;
    for (const auto& [connection, waiter] : waiting_for_ready)
        add_waiter(next, &Bucket::waiting_for_ready, waiter);

    const std::string restarting = monitor_reply(why + "; restarting");
    for (const auto& [connection, waiter] : monitors)
        waiter.send(restarting);

    const auto delay = next.supervision.intensity.delay(options_.supervision);
    if (delay.count() > 0)
        arm_timer(next, delay, BucketEvent::restart_due);
    else
        dispatch(next, BucketEvent::restart_due);
}

void Registry::record_exit(const Bucket& bucket, BucketState was, const ExitReason& reason, const std::string& outcome)
{
    const std::string why = reason.describe();
    // A bucket that ends other than by the SIGTERM we sent it is news.
    const bool expected = was == BucketState::stopping && bucket.failure.empty()
        && ((reason.code == CLD_EXITED && reason.status == 0) || (reason.code == CLD_KILLED && reason.status == SIGTERM));
    log_line(expected ? LogLevel::info : LogLevel::warning, describe(bucket) + " " + why
        + (bucket.failure.empty() ? "" : " (" + bucket.failure + ")") + (outcome == "removed" ? "" : "; " + outcome));

    // Counted and remembered before anyone is answered, so a client that
    // hears of the exit (MONITOR, STOP) finds it in INFO and HISTORY.
    ++counters_.exits;
    if (reason.code == CLD_EXITED)
        ++(reason.status == 0 ? counters_.exits_status_zero : counters_.exits_status_nonzero);
    else if (reason.code == CLD_KILLED || reason.code == CLD_DUMPED)
        ++counters_.exits_signal;
    if (was == BucketState::stopping)
        ++counters_.exits_stopped;
    if (was == BucketState::starting && bucket.supervision.restarts == 0)
        ++counters_.exits_before_ready;
    history_.add(ExitRecord { bucket.name, bucket.pid, bucket.id, why, unix_ms(bucket.started_at),
        unix_ms(std::chrono::system_clock::now()), to_string(bucket.supervision.policy), bucket.supervision.restarts, outcome });
}

void Registry::remove(Bucket& bucket, BucketState was, const ExitReason& reason, const std::string& gave_up)
{
    names_.withdraw(bucket.name); // already gone when the exit was seen; not when a wait failed
    const std::string why = reason.describe();
    record_exit(bucket, was, reason, gave_up.empty() ? "removed" : gave_up.substr(0, gave_up.find(';')));
    if (!gave_up.empty())
        ++counters_.given_up;

    const std::string exit_reply = monitor_reply(gave_up.empty() ? why : gave_up);
    std::string create_error = error_reply(ErrorCode::error, "bucket " + printable(bucket.name) + " "
        + (!gave_up.empty() ? gave_up : (bucket.failure.empty() ? why : bucket.failure + "; " + why) + " before it was ready"));
    retire(bucket, exit_reply, create_error);
}

void Registry::retire(Bucket& bucket, const std::string& monitor_reply, const std::string& create_error)
{
    auto waiting_for_ready = std::move(bucket.waiting_for_ready);
    auto waiting_for_stop = std::move(bucket.waiting_for_stop);
    auto monitors = std::move(bucket.monitors);

    // Both indexes change together, and before anyone is answered: once a
    // caller hears of the exit, no request can find the name (in a cluster,
    // the name is free there as soon as etcd hears the release).
    release_claim(bucket);
    erase(bucket);

    for (const auto& [connection, waiter] : waiting_for_ready)
        waiter.send(create_error);
    for (const auto& [connection, waiter] : waiting_for_stop)
        waiter.send("+OK\r\n");
    for (const auto& [connection, waiter] : monitors)
        waiter.send(monitor_reply);

    if (state_ == RegistryState::shutting_down && buckets_.empty() && on_empty_)
        std::exchange(on_empty_, nullptr)();
}

void Registry::shutdown(std::function<void()> done)
{
    state_ = RegistryState::shutting_down;
    on_empty_ = std::move(done);
    if (buckets_.empty()) {
        std::exchange(on_empty_, nullptr)();
        return;
    }
    // A restarting bucket is erased by its event: walk the ids, not the map.
    std::vector<unsigned long long> ids;
    for (const auto& [name, bucket] : buckets_)
        ids.push_back(bucket.id);
    for (unsigned long long id : ids)
        if (Bucket* bucket = find(id))
            dispatch(*bucket, BucketEvent::registry_shutdown);
}

} // namespace kv
