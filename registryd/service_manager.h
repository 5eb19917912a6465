// What registryd tells systemd (Type=notify), through libsystemd's sd_notify:
// READY=1 once registry.sock accepts, STATUS= with the bucket count whenever
// it changes, STOPPING=1 when a stop begins, and WATCHDOG=1 from the event
// loop at half the WatchdogSec systemd asked for (so a hung loop gets
// registryd restarted). Outside systemd (no NOTIFY_SOCKET) every call does
// nothing.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

#include "asio.h"

namespace kv {

class ServiceManager {
public:
    // Starts the watchdog timer if systemd asked for one (WATCHDOG_USEC,
    // for this pid if WATCHDOG_PID is set).
    explicit ServiceManager(asio::io_context& io);

    // The socket accepts: READY=1 with the first STATUS=.
    void ready(std::size_t buckets);
    // STATUS=, only if the count differs from the last one told.
    void buckets_changed(std::size_t buckets);
    // STOPPING=1 with why; the watchdog keeps running while buckets stop.
    void stopping(const std::string& why);

    // The watchdog period systemd asked for, if any.
    std::optional<std::chrono::microseconds> watchdog_timeout() const { return watchdog_timeout_; }

private:
    void notify(const std::string& state);
    void pet_watchdog();

    asio::steady_timer watchdog_timer_;
    std::optional<std::chrono::microseconds> watchdog_timeout_;
    std::optional<std::size_t> told_buckets_;
    bool ready_ = false;
    bool told_failure_ = false;
};

} // namespace kv
