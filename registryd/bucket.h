// Bucket: what registryd knows about one bucketd child, and the states it
// goes through. Transitions happen only in Registry (registry.cpp).
//
//   starting --ready "\n"--> ready --STOP--> stopping
//       |                      |                |
//       +---- pidfd readable: name withdrawn, process group killed, reaped ----+--> gone (erased)
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
#include "socket_file.h"
#include "unique_fd.h"

namespace kv {

enum class BucketState { starting, ready, stopping };

const char* to_string(BucketState state);

// "SIGTERM", or "signal 40" for one without a name.
std::string signal_name(int signal);

// How a bucket ended, from waitid(): si_code and si_status kept apart.
struct ExitReason {
    int code = 0;   // CLD_EXITED, CLD_KILLED or CLD_DUMPED
    int status = 0; // exit status or signal number

    // "exited with status 3", "killed by SIGKILL", "killed by SIGSEGV (core dumped)"
    std::string describe() const;
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
    std::chrono::steady_clock::time_point started;
    std::chrono::system_clock::time_point started_at; // the same moment on the wall clock, for HISTORY
    BucketState state = BucketState::starting;

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
    std::string failure;

    // Callers waiting on this bucket, by connection id: a connection has at
    // most one call outstanding, and one that hangs up is forgotten at once.
    using Waiters = std::map<std::uint64_t, Responder>;
    Waiters waiting_for_ready; // CREATE and LOOKUP calls made while starting
    Waiters waiting_for_stop;  // STOP calls
    Waiters monitors;          // MONITOR calls
};

} // namespace kv
