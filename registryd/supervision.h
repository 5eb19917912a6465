// Supervision: when registryd restarts a bucket that exited, and when it gives
// up, as an OTP supervisor decides (supervisor.erl's restart/2 and
// add_restart/1). Pure rules with the clock passed in, so they are tested
// without processes (tests/supervision_test.cpp); Registry (registry.cpp)
// carries the decision out.
//
//   - The policy (restart_policy.h) says whether an exit calls for a restart:
//     never one registryd asked for (STOP, its own shutdown), nor the failure
//     of a bucket's first start (CREATE answers that error instead).
//   - The intensity says whether one more restart is allowed: more than
//     max_restarts restarts within max_seconds, and the bucket is given up.
//   - The delay (a backoff OTP does not have, supervisord and s6 do): none by
//     default; else restart_delay, doubled for each earlier restart still in
//     the intensity window, up to restart_delay_max.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <string>

#include "restart_policy.h"

namespace kv {

struct SupervisionOptions {
    RestartPolicy default_policy = RestartPolicy::temporary; // --restart; CREATE's RESTART wins
    std::size_t max_restarts = 3;                             // --max-restarts, OTP's intensity
    std::chrono::seconds max_seconds { 5 };                   // --max-seconds, OTP's period
    std::chrono::milliseconds restart_delay { 0 };            // --restart-delay-ms
    std::chrono::milliseconds restart_delay_max { 30000 };    // --restart-delay-max-ms
};

// Whether an exit calls for a restart under `policy`. `asked_to_stop`: it was
// stopping (STOP or registryd's shutdown); `first_start`: it had never been
// ready since its CREATE; `clean_exit`: it exited with status 0.
bool wants_restart(RestartPolicy policy, bool asked_to_stop, bool first_start, bool clean_exit);

// The restarts of one bucket within the intensity window.
class RestartIntensity {
public:
    using Clock = std::chrono::steady_clock;

    // OTP's add_restart: counts a restart at `now`, forgetting those older
    // than max_seconds. False if that makes more than max_restarts: give up.
    bool admit(Clock::time_point now, const SupervisionOptions& options);
    // Restarts in the window, the one just admitted (or refused) included.
    std::size_t recent() const { return recent_.size(); }
    // How long to wait before the restart just admitted.
    std::chrono::milliseconds delay(const SupervisionOptions& options) const;

private:
    std::deque<Clock::time_point> recent_;
};

// "gave up after 4 restarts in 5 s; last exit: killed by SIGSEGV"
std::string gave_up_text(std::size_t restarts, std::chrono::seconds window, const std::string& last_exit);

} // namespace kv
