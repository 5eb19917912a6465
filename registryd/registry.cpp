#include "registry.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "bucket_name.h"
#include "log.h"
#include "pidfd.h"
#include "run_dir.h"
#include "shared_table.h"
#include "spawn_bucket.h"

namespace kv {

const char* to_string(BucketState state)
{
    switch (state) {
    case BucketState::starting: return "starting";
    case BucketState::ready: return "ready";
    case BucketState::stopping: return "stopping";
    }
    return "unknown";
}

static std::string signal_name(int signal)
{
    if (const char* abbreviation = ::sigabbrev_np(signal))
        return std::string("SIG") + abbreviation;
    return "signal " + std::to_string(signal);
}

std::string ExitReason::describe() const
{
    switch (code) {
    case CLD_EXITED: return "exited with status " + std::to_string(status);
    case CLD_KILLED: return "killed by " + signal_name(status);
    case CLD_DUMPED: return "killed by " + signal_name(status) + " (core dumped)";
    }
    return "ended (waitid si_code " + std::to_string(code) + ", status " + std::to_string(status) + ")";
}

namespace {

// Temporary, until registryd creates each segment and keeps its descriptor:
// the table helpers take a descriptor, so open the name registryd chose.
UniqueFd open_segment(const std::string& name, int flags)
{
    return UniqueFd(::shm_open(name.c_str(), flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0));
}

std::string describe(const Bucket& bucket)
{
    return "bucket " + printable(bucket.name) + " (pid " + std::to_string(bucket.pid) + ", id "
        + std::to_string(bucket.id) + ")";
}

// The reply to CREATE and LOOKUP, and one entry of LIST: a flat field/value
// array, as HGETALL would give it.
std::string bucket_reply(const Bucket& bucket, bool with_stats)
{
    std::string out;
    resp::append_array_header(out, with_stats ? 18 : 10);
    resp::append_bulk(out, "name");
    resp::append_bulk(out, bucket.name);
    resp::append_bulk(out, "pid");
    resp::append_integer(out, bucket.pid);
    resp::append_bulk(out, "id");
    resp::append_integer(out, static_cast<long long>(bucket.id));
    resp::append_bulk(out, "socket");
    resp::append_bulk(out, bucket.socket_path);
    resp::append_bulk(out, "segment");
    resp::append_bulk(out, bucket.segment_name);
    if (with_stats) {
        auto stats = read_table_stats(open_segment(bucket.segment_name, O_RDONLY).get()).value_or(TableStats {});
        auto uptime = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - bucket.started);
        resp::append_bulk(out, "state");
        resp::append_bulk(out, to_string(bucket.state));
        resp::append_bulk(out, "uptime_ms");
        resp::append_integer(out, uptime.count());
        resp::append_bulk(out, "keys");
        resp::append_integer(out, static_cast<long long>(stats.keys));
        resp::append_bulk(out, "bytes");
        resp::append_integer(out, static_cast<long long>(stats.bytes));
    }
    return out;
}

std::string error_reply(const std::string& text)
{
    std::string out;
    resp::append_error(out, text);
    return out;
}

std::string not_found(const std::string& name) { return error_reply("NOTFOUND no bucket named " + printable(name)); }

// Room for every bucket's entry (name, pid, id, two paths) and the index.
std::size_t name_table_size(std::size_t max_buckets)
{
    return std::max<std::size_t>(16 << 20, max_buckets * 2048 + (1 << 20));
}

} // namespace

Registry::Registry(asio::io_context& io, RegistryOptions options)
    : io_(io)
    , options_(std::move(options))
    , server_config_text_(options_.server.encode())
    , names_(options_.run_dir, name_table_size(options_.max_buckets))
{
    names_.publish_alive();
}

Registry::~Registry()
{
    // Normally shutdown() has emptied us. If not (an exception unwinding
    // main), leave no child behind: kill and reap each through its pidfd.
    for (auto& [name, bucket] : buckets_) {
        ::pidfd_send_signal(bucket.pidfd->native_handle(), SIGKILL, nullptr, 0);
        siginfo_t info {};
        ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(bucket.pidfd->native_handle()), &info, WEXITED);
        ::shm_unlink(bucket.segment_name.c_str());
        ::unlink(bucket.socket_path.c_str());
    }
}

Bucket* Registry::find(const std::string& name)
{
    auto it = buckets_.find(name);
    return it == buckets_.end() ? nullptr : &it->second;
}

void Registry::create(const std::string& name, const Responder& responder)
{
    if (auto reason = bucket_name_error(name)) {
        responder.send(error_reply("INVALID invalid bucket name: " + *reason));
        return;
    }
    if (Bucket* existing = find(name)) {
        switch (existing->state) {
        case BucketState::ready: responder.send(bucket_reply(*existing, false)); return;
        case BucketState::starting: existing->waiting_for_ready.push_back(responder); return;
        case BucketState::stopping:
            responder.send(error_reply("BUSY bucket " + printable(name) + " is stopping; create it again once STOP has replied"));
            return;
        }
    }
    if (buckets_.size() >= options_.max_buckets) {
        responder.send(error_reply("LIMIT unable to create bucket " + printable(name) + ": limit of "
            + std::to_string(options_.max_buckets) + " buckets reached (--max-buckets)"));
        return;
    }
    if (on_empty_) {
        responder.send(error_reply("BUSY unable to create bucket " + printable(name) + ": registryd is shutting down"));
        return;
    }

    const unsigned long long id = next_id_++;
    BucketLaunch launch;
    launch.bucketd_path = options_.bucketd_path;
    launch.name = name;
    launch.segment_name = segment_name(options_.run_dir, ::getpid(), id);
    launch.socket_path = bucket_socket_path(options_.run_dir, id);
    launch.bucket_size = options_.bucket_size;
    launch.debug_command_enabled = options_.debug_command_enabled;
    launch.server_config = server_config_text_;

    SpawnedBucket spawned;
    try {
        spawned = spawn_bucket(launch);
    } catch (const std::exception& error) {
        log_line("unable to create bucket " + printable(name) + ": " + error.what());
        responder.send(error_reply(std::string("ERR unable to create bucket ") + printable(name) + ": " + error.what()));
        return;
    }

    // Every step that can fail is done: commit the bucket to both indexes.
    auto [it, inserted] = buckets_.try_emplace(name, io_);
    Bucket& bucket = it->second;
    bucket.name = name;
    bucket.id = id;
    bucket.pid = spawned.pid;
    bucket.segment_name = launch.segment_name;
    bucket.socket_path = launch.socket_path;
    bucket.started = std::chrono::steady_clock::now();
    bucket.state = BucketState::starting;
    bucket.pidfd = std::make_unique<asio::posix::stream_descriptor>(io_, spawned.pidfd.release());
    bucket.ready_pipe = std::make_unique<asio::posix::stream_descriptor>(io_, spawned.ready_pipe.release());
    bucket.waiting_for_ready.push_back(responder);
    by_pidfd_[bucket.pidfd->native_handle()] = name;

    log_line(describe(bucket) + " starting");
    watch_exit(bucket);
    watch_ready(bucket);
}

void Registry::watch_exit(Bucket& bucket)
{
    const int pidfd = bucket.pidfd->native_handle();
    const unsigned long long id = bucket.id;
    bucket.pidfd->async_wait(asio::posix::stream_descriptor::wait_read,
        [this, pidfd, id](const boost::system::error_code& error) {
            if (error != asio::error::operation_aborted)
                on_bucket_exit(pidfd, id);
        });
    // The reactor is edge-triggered: an exit between the spawn and the
    // arming above would never be reported. Look once, without reaping.
    siginfo_t info {};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG | WNOWAIT) == 0
        && info.si_pid != 0)
        asio::post(io_, [this, pidfd, id] { on_bucket_exit(pidfd, id); });
}

void Registry::watch_ready(Bucket& bucket)
{
    const std::string name = bucket.name;
    const unsigned long long id = bucket.id;
    read_readiness(bucket);
    bucket.timer.expires_after(options_.ready_timeout);
    bucket.timer.async_wait([this, name, id](const boost::system::error_code& error) {
        if (!error)
            on_ready_timeout(name, id);
    });
}

void Registry::read_readiness(Bucket& bucket)
{
    const std::string name = bucket.name;
    const unsigned long long id = bucket.id;
    bucket.ready_pipe->async_read_some(asio::buffer(bucket.ready_buffer),
        [this, name, id](const boost::system::error_code& error, std::size_t size) {
            if (error != asio::error::operation_aborted)
                on_ready(name, id, error, size);
        });
}

void Registry::on_ready(const std::string& name, unsigned long long id, const boost::system::error_code& error, std::size_t size)
{
    Bucket* bucket = find(name);
    if (!bucket || bucket->id != id)
        return;
    bucket->ready_text.append(bucket->ready_buffer.data(), error ? 0 : size);
    auto newline = bucket->ready_text.find('\n');
    if (!error && newline == std::string::npos && bucket->ready_text.size() < 512) {
        read_readiness(*bucket);
        return;
    }
    bucket->ready_pipe.reset();
    if (newline != 0 && bucket->failure.empty()) {
        // Not ready. A bucket that could not start says why on the pipe and
        // exits; one that closed the pipe silently is killed. Either way its
        // exit, seen on the pidfd, answers the callers.
        std::string message = printable(bucket->ready_text.substr(0, newline));
        if (!message.empty()) {
            bucket->failure = "could not start: " + message;
        } else if (!bucket->exit_reason) {
            bucket->failure = "closed its readiness pipe without writing a newline";
            send_signal(*bucket, SIGKILL);
        }
    }
    if (bucket->exit_reason) {
        // It has exited and been reaped already (see on_bucket_exit); now
        // that its last words are read, finish the removal.
        remove(*bucket, *bucket->exit_reason);
        return;
    }
    if (newline != 0)
        return;
    if (bucket->state != BucketState::starting) {
        log_line(describe(*bucket) + ": readiness reported while " + to_string(bucket->state) + "; ignored");
        return;
    }
    // Published before anyone hears CREATE's reply, as the guide's registry
    // inserts into ETS before it replies.
    if (!names_.publish(bucket->name, BucketRecord { bucket->pid, bucket->id, 0, bucket->socket_path, bucket->segment_name })) {
        bucket->failure = "could not be published: the name table is full";
        log_line(describe(*bucket) + " " + bucket->failure + "; killing it");
        send_signal(*bucket, SIGKILL);
        return;
    }
    bucket->timer.cancel();
    bucket->state = BucketState::ready;
    log_line(describe(*bucket) + " ready");
    std::string reply = bucket_reply(*bucket, false);
    for (const auto& waiter : std::exchange(bucket->waiting_for_ready, {}))
        waiter.send(reply);
}

void Registry::on_ready_timeout(const std::string& name, unsigned long long id)
{
    Bucket* bucket = find(name);
    if (!bucket || bucket->id != id || bucket->state != BucketState::starting)
        return;
    bucket->failure = "did not become ready within "
        + std::to_string(options_.ready_timeout.count()) + " ms";
    log_line(describe(*bucket) + " " + bucket->failure + "; killing it");
    send_signal(*bucket, SIGKILL);
}

void Registry::send_signal(Bucket& bucket, int signal)
{
    // Through the pidfd: the pid cannot have been reused, whatever happened.
    if (::pidfd_send_signal(bucket.pidfd->native_handle(), signal, nullptr, 0) == -1 && errno != ESRCH)
        log_line(describe(bucket) + ": unable to send " + signal_name(signal) + ": " + std::strerror(errno));
}

void Registry::lookup(const std::string& name, const Responder& responder)
{
    Bucket* bucket = find(name);
    if (!bucket) {
        responder.send(not_found(name));
        return;
    }
    if (bucket->state == BucketState::starting)
        bucket->waiting_for_ready.push_back(responder);
    else
        responder.send(bucket_reply(*bucket, false));
}

void Registry::list(const Responder& responder) const
{
    std::string out;
    resp::append_array_header(out, buckets_.size());
    for (const auto& [name, bucket] : buckets_)
        out += bucket_reply(bucket, true);
    responder.send(std::move(out));
}

void Registry::stop(const std::string& name, const Responder& responder)
{
    Bucket* bucket = find(name);
    if (!bucket) {
        responder.send(not_found(name));
        return;
    }
    bucket->waiting_for_stop.push_back(responder);
    begin_stop(*bucket);
}

void Registry::begin_stop(Bucket& bucket)
{
    if (bucket.state == BucketState::stopping)
        return;
    bucket.state = BucketState::stopping;
    log_line(describe(bucket) + " stopping");
    send_signal(bucket, SIGTERM);
    bucket.timer.cancel();
    bucket.timer.expires_after(options_.stop_grace);
    const std::string name = bucket.name;
    const unsigned long long id = bucket.id;
    bucket.timer.async_wait([this, name, id](const boost::system::error_code& error) {
        if (!error)
            on_grace_expired(name, id);
    });
}

void Registry::on_grace_expired(const std::string& name, unsigned long long id)
{
    Bucket* bucket = find(name);
    if (!bucket || bucket->id != id)
        return;
    bucket->failure = "did not stop within " + std::to_string(options_.stop_grace.count()) + " ms of SIGTERM";
    log_line(describe(*bucket) + " " + bucket->failure + "; killing it");
    send_signal(*bucket, SIGKILL);
}

void Registry::monitor(const std::string& name, const Responder& responder)
{
    Bucket* bucket = find(name);
    if (!bucket) {
        responder.send(not_found(name));
        return;
    }
    bucket->monitors.push_back(responder);
}

void Registry::on_bucket_exit(int pidfd, unsigned long long id)
{
    auto index = by_pidfd_.find(pidfd);
    if (index == by_pidfd_.end())
        return; // already handled (the exit was seen twice: by the look at arming and by the reactor)
    Bucket* bucket = find(index->second);
    if (!bucket || bucket->id != id)
        return;
    siginfo_t info {};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG) == -1) {
        log_line(describe(*bucket) + ": unable to reap: " + std::strerror(errno));
        remove(*bucket, ExitReason { 0, 0 });
        return;
    }
    if (info.si_pid == 0) {
        // Readable without an exit should not happen; say so and keep watching.
        log_line(describe(*bucket) + ": pidfd readable but the process has not exited; still watching");
        watch_exit(*bucket);
        return;
    }
    ExitReason reason { info.si_code, info.si_status };
    if (bucket->ready_pipe) {
        // Reaped, but its readiness pipe is still open: the line it wrote on
        // its way out (why it could not start) may not be read yet. The pipe
        // is at EOF now that the process is gone; on_ready finishes the removal.
        by_pidfd_.erase(pidfd);
        bucket->exit_reason = reason;
        return;
    }
    remove(*bucket, reason);
}

void Registry::remove(Bucket& bucket, const ExitReason& reason)
{
    // First the name: the published copy is what clients on this machine
    // look at, so it goes before any slower cleanup. Nobody is answered until
    // the end, so for callers of registryd the order inside is invisible.
    const std::string name = bucket.name;
    names_.withdraw(name);

    std::string why = reason.describe();
    log_line(describe(bucket) + " " + why + (bucket.failure.empty() ? "" : " (" + bucket.failure + ")"));

    // A bucket that crashed left its segment and socket: remove them, by the
    // names registryd chose, so nothing of it outlives it. Readers that still
    // have the segment mapped are told that its data is no longer true.
    mark_table_gone(open_segment(bucket.segment_name, O_RDWR).get());
    ::shm_unlink(bucket.segment_name.c_str());
    ::unlink(bucket.socket_path.c_str());

    std::string create_error = error_reply("ERR bucket " + printable(bucket.name) + " "
        + (bucket.failure.empty() ? why : bucket.failure + "; " + why) + " before it was ready");
    std::string stopped = "+OK\r\n";
    std::string monitor_reply;
    resp::append_simple(monitor_reply, why);
    auto waiting_for_ready = std::move(bucket.waiting_for_ready);
    auto waiting_for_stop = std::move(bucket.waiting_for_stop);
    auto monitors = std::move(bucket.monitors);

    // Both indexes change together, and before anyone is answered: once a
    // caller hears of the exit, no request can find the name.
    by_pidfd_.erase(bucket.pidfd->native_handle()); // already gone if on_bucket_exit deferred the removal
    buckets_.erase(name); // closes the pidfd and the readiness pipe, cancels the timer

    for (const auto& waiter : waiting_for_ready)
        waiter.send(create_error);
    for (const auto& waiter : waiting_for_stop)
        waiter.send(stopped);
    for (const auto& waiter : monitors)
        waiter.send(monitor_reply);

    if (buckets_.empty() && on_empty_)
        std::exchange(on_empty_, nullptr)();
}

void Registry::shutdown(std::function<void()> done)
{
    on_empty_ = std::move(done);
    if (buckets_.empty()) {
        std::exchange(on_empty_, nullptr)();
        return;
    }
    for (auto& [name, bucket] : buckets_)
        begin_stop(bucket);
}

} // namespace kv
