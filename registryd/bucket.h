// Bucket: what registryd knows about one bucketd child, and its lifecycle as
// one table: bucket_step() maps (state x event) to a named transition and the
// state after it. Registry (registry.cpp) turns events into calls of
// Registry::dispatch and carries each transition out; it decides nothing
// about the lifecycle itself.
//
//                 ready_line: publish
//   starting ─────────────────────────────────────────> ready
//    ^ │ │  failure_line: note_failure        (stays)       │
//    │ │ │  pipe_closed: kill_silent          (stays)       │
//    │ │ │  ready_timeout: kill_timed_out     (stays)       │
//    │ │ │  publish_failed: kill_unpublished  (stays)       │
//    │ │ │                                                  │
//    │ │ └── stop_requested, registry_shutdown: begin_stop ─┤
//    │ │                        │                           │ stop_requested,
//    │ │                        v                           │ registry_shutdown:
//    │ │                    stopping <──────────────────────┘ begin_stop
//    │ │                     │  grace_expired: kill_stubborn      (stays)
//    │ │                     │  failure_line: note_failure        (stays)
//    │ │                     │  pipe_closed: kill_silent          (stays)
//    │ │                     │  ready_line: ignore_late_ready     (stays)
//    │ v                     v
//    │ starting, ready, stopping ──exited: reap──────> exited (erased at once)
//    │                          ──wait_failed: forget─> exited (erased at once)
//    │                                  │
//    │     reap, when supervision.h says restart: the name stays, under a new id
//    │                                  v
//    └──restart_due: respawn──── restarting ──stop_requested, registry_shutdown:
//                                               cancel_restart──> exited (erased)
//
// `restarting` has no process: it waits out the restart delay (none by
// default, so respawn follows the exit at once). Whether `reap` ends in
// `exited` or `restarting` is not the table's to say: supervision.h decides
// it from the policy, the exit and the restart intensity.
//
// Any pair not drawn is `ignore`: a late event with nothing left to do (a
// timer that fired as it was cancelled, a second STOP). A callback for a
// bucket that has gone, or been replaced by one of the same name, never gets
// this far: callbacks name their bucket by id, never reused (Registry::find).
//
// Everything registryd made for a bucket (its segment, its socket file) is
// held here by descriptor and removed with an identity check, so nothing
// another instance made under a similar name is ever touched.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "asio.h"
#include "resp_server.h"
#include "restart_policy.h"
#include "socket_file.h"
#include "supervision.h"
#include "unique_fd.h"

namespace kv {

// LIST shows the state by these names (to_string); `exited` is never seen
// there: an exited bucket is erased in the same transition.
enum class BucketState { starting, ready, stopping, restarting, exited };

// What can happen to a bucket.
enum class BucketEvent {
    ready_line,        // the readiness pipe says "\n"
    failure_line,      // the readiness pipe says why the bucket could not start
    pipe_closed,       // the readiness pipe closed without a line
    publish_failed,    // ready, but the name table is full
    ready_timeout,     // --ready-timeout-ms passed while starting
    stop_requested,    // STOP
    registry_shutdown, // registryd itself is stopping (SIGTERM, SIGINT)
    grace_expired,     // --stop-grace-ms passed after SIGTERM
    exited,            // the pidfd is readable and the exit was seen
    wait_failed,       // the pidfd is readable but waitid failed: the reason is lost
    restart_due,       // the restart delay has passed
};

// What registryd does about it (Registry::dispatch carries each out).
enum class BucketTransition {
    publish,           // publish the name, answer CREATE and LOOKUP
    note_failure,      // remember why it could not start; its exit follows
    kill_silent,       // it closed the pipe without a word: SIGKILL its group
    kill_timed_out,    // never ready in time: SIGKILL its group
    kill_unpublished,  // no room in the name table: SIGKILL its group
    begin_stop,        // SIGTERM, arm the grace period
    kill_stubborn,     // still there after the grace period: SIGKILL its group
    reap,              // withdraw the name, kill its group, reap it, remove it, answer everyone
    forget,            // remove it without a reason, answer everyone
    respawn,           // start the process again under the same name
    cancel_restart,    // stopped while waiting to restart: remove it, answer everyone
    ignore_late_ready, // ready after a STOP: logged, ignored
    ignore,            // nothing left to do
};

struct BucketStep {
    BucketTransition transition;
    BucketState next;
};

// The lifecycle table: every (state x event) pair, in one switch.
BucketStep bucket_step(BucketState state, BucketEvent event);

const char* to_string(BucketState state);
const char* to_string(BucketEvent event);
const char* to_string(BucketTransition transition);

// "SIGTERM", or "signal 40" for one without a name.
std::string signal_name(int signal);

// How a bucket ended, from waitid(): si_code and si_status kept apart.
struct ExitReason {
    int code = 0;   // CLD_EXITED, CLD_KILLED or CLD_DUMPED
    int status = 0; // exit status or signal number

    // "exited with status 3", "killed by SIGKILL", "killed by SIGSEGV (core dumped)"
    std::string describe() const;
    bool clean() const; // exited with status 0
};

// The segment registryd created for a bucket. Going out of scope, it removes
// the name only if the name still refers to this very object.
struct BucketSegment {
    BucketSegment() = default;
    BucketSegment(std::string name, UniqueFd fd) : name(std::move(name)), fd(std::move(fd)) {}
    BucketSegment(BucketSegment&&) = default;
    BucketSegment& operator=(BucketSegment&&) = delete;
    ~BucketSegment();

    std::string name;
    UniqueFd fd;
};

struct Bucket {
    Bucket(asio::io_context& io) : timer(io) {}

    std::string name;
    unsigned long long id = 0;
    pid_t pid = -1;
    BucketSegment segment; // created by registryd, sized and filled by the bucket
    SocketFile socket;  // bound by registryd; the bucket serves the listener it inherits
    // --listen-tcp: where the bucket serves RESP over TCP too ("127.0.0.1:PORT",
    // a new port at each start), to clients that AUTH; empty without TCP.
    std::string tcp_address;
    std::chrono::steady_clock::time_point started;
    std::chrono::system_clock::time_point started_at; // the same moment on the wall clock, for HISTORY
    BucketState state = BucketState::starting;

    // Supervision (supervision.h): this, and the callers waiting for it to
    // be ready, are all a restart carries to the new process; a restarted
    // bucket is otherwise new: its own id, pid, segment and socket.
    struct Supervision {
        RestartPolicy policy = RestartPolicy::temporary;
        // KEEP: a restart hands this bucket's segment to the new process, which
        // adopts its table if it is intact (else starts empty and logs why).
        bool keep = false;
        RestartIntensity intensity;
        unsigned long long restarts = 0; // since its CREATE
        std::string last_exit;           // why the process before this one ended; empty before a restart
    } supervision;

    // Owns the pidfd; readable when the child exits.
    std::unique_ptr<asio::posix::stream_descriptor> pidfd;
    // Owns the readiness pipe (non-blocking) while starting. The bucket
    // writes "\n" when ready, or one line saying why it could not start.
    // registryd waits for it to be readable and reads it itself, so at the
    // exit everything the bucket wrote is either here or still in the pipe.
    std::unique_ptr<asio::posix::stream_descriptor> ready_pipe;
    std::string ready_text;
    // Ready timeout while starting; SIGTERM grace period while stopping.
    asio::steady_timer timer;
    // Why it failed, if registryd knows: "did not become ready within 5000 ms",
    // "could not start: unable to reserve segment ...: No space left on device".
    // Reported with the exit; it decides no transition.
    std::string failure;
    // Cluster mode (cluster.h): the revision of this node's claim of the
    // name in etcd, which a restart carries; 0 outside a cluster.
    long long claim = 0;
    long long claim_lease = 0; // the lease that claim was made under: only its keepalives move the bucket's fence
    bool reclaiming = false;   // a claim of the name under a new lease is under way

    // Callers waiting on this bucket, by connection id: a connection has at
    // most one call outstanding, and one that hangs up is forgotten at once.
    using Waiters = std::map<std::uint64_t, Responder>;
    Waiters waiting_for_ready; // CREATE and LOOKUP calls made while starting
    Waiters waiting_for_stop;  // STOP calls
    Waiters monitors;          // MONITOR calls
};

} // namespace kv
