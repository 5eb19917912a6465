// Bucket: what registryd knows about one bucketd child, and the states it
// goes through. Transitions happen only in Registry (registry.cpp).
//
//   starting --ready "\n"--> ready --STOP--> stopping
//       |                      |                |
//       +--------- pidfd readable, reaped ------+--> gone (erased)
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "asio.h"
#include "resp_server.h"

namespace kv {

enum class BucketState { starting, ready, stopping };

const char* to_string(BucketState state);

// How a bucket ended, from waitid(): si_code and si_status kept apart.
struct ExitReason {
    int code = 0;   // CLD_EXITED, CLD_KILLED or CLD_DUMPED
    int status = 0; // exit status or signal number

    // "exited with status 3", "killed by SIGKILL", "killed by SIGSEGV (core dumped)"
    std::string describe() const;
};

struct Bucket {
    Bucket(asio::io_context& io) : timer(io) {}

    std::string name;
    unsigned long long id = 0;
    pid_t pid = -1;
    std::string segment_name;
    std::string socket_path;
    std::chrono::steady_clock::time_point started;
    BucketState state = BucketState::starting;

    // Owns the pidfd; readable when the child exits.
    std::unique_ptr<asio::posix::stream_descriptor> pidfd;
    // Owns the readiness pipe while starting. The bucket writes "\n" when
    // ready, or one line saying why it could not start.
    std::unique_ptr<asio::posix::stream_descriptor> ready_pipe;
    std::array<char, 128> ready_buffer {};
    std::string ready_text;
    // Ready timeout while starting; SIGTERM grace period while stopping.
    asio::steady_timer timer;
    // Why it failed, if registryd knows: "did not become ready within 5000 ms",
    // "could not start: unable to reserve segment ...: No space left on device".
    std::string failure;
    // Set when it was reaped while its readiness pipe was still open; the
    // removal then completes once the pipe has been read to its end.
    std::optional<ExitReason> exit_reason;

    std::vector<Responder> waiting_for_ready; // CREATE and LOOKUP calls made while starting
    std::vector<Responder> waiting_for_stop;  // STOP calls
    std::vector<Responder> monitors;          // MONITOR calls
};

} // namespace kv
