#include "supervision.h"

#include <algorithm>

namespace kv {

bool wants_restart(RestartPolicy policy, bool asked_to_stop, bool first_start, bool clean_exit)
{
    if (asked_to_stop || first_start)
        return false;
    switch (policy) {
    case RestartPolicy::temporary: return false;
    case RestartPolicy::transient: return !clean_exit;
    case RestartPolicy::permanent: return true;
    }
    return false;
}

bool RestartIntensity::admit(Clock::time_point now, const SupervisionOptions& options)
{
    // As supervisor.erl: the new restart joins those within the period, and
    // the bucket is given up once they are more than the intensity.
    while (!recent_.empty() && now - recent_.front() > options.max_seconds)
        recent_.pop_front();
    recent_.push_back(now);
    return recent_.size() <= options.max_restarts;
}

std::chrono::milliseconds RestartIntensity::delay(const SupervisionOptions& options) const
{
    if (options.restart_delay.count() <= 0 || recent_.empty())
        return std::chrono::milliseconds(0);
    const auto cap = std::max(options.restart_delay, options.restart_delay_max);
    auto delay = options.restart_delay;
    for (std::size_t earlier = 1; earlier < recent_.size() && delay < cap; ++earlier)
        delay *= 2;
    return std::min(delay, cap);
}

std::string gave_up_text(std::size_t restarts, std::chrono::seconds window, const std::string& last_exit)
{
    return "gave up after " + std::to_string(restarts) + (restarts == 1 ? " restart" : " restarts") + " in "
        + std::to_string(window.count()) + " s; last exit: " + last_exit;
}

} // namespace kv
