#include "service_manager.h"

#include <systemd/sd-daemon.h>

#include <cstring>
#include <utility>

#include "log.h"

namespace kv {

ServiceManager::ServiceManager(asio::io_context& io)
    : watchdog_timer_(io)
{
    // sd_watchdog_enabled checks WATCHDOG_PID against our pid, so a
    // WATCHDOG_USEC meant for a parent (a shell started under systemd) is
    // not taken for ours. 0 unsets nothing: buckets never see these
    // variables anyway (spawn.cpp removes them).
    std::uint64_t usec = 0;
    const int enabled = ::sd_watchdog_enabled(0, &usec);
    if (enabled < 0)
        log_line(LogLevel::warning, std::string("ignoring the systemd watchdog settings: ") + std::strerror(-enabled));
    else if (enabled > 0 && usec > 0) {
        watchdog_timeout_ = std::chrono::microseconds(usec);
        pet_watchdog();
    }
}

void ServiceManager::notify(const std::string& state)
{
    // sd_notify is one sendmsg on a datagram socket: it does not block the
    // loop. It fails only if systemd is gone, and then nobody is listening.
    // Said once: a watchdog ping every few seconds must not fill the log.
    const int sent = ::sd_notify(0, state.c_str());
    if (sent < 0 && !std::exchange(told_failure_, true))
        log_line(LogLevel::warning, "unable to notify systemd (" + state.substr(0, state.find('\n')) + ") through NOTIFY_SOCKET: "
            + std::strerror(-sent) + "; further failures are not logged");
}

void ServiceManager::ready(std::size_t buckets)
{
    ready_ = true;
    told_buckets_ = buckets;
    notify("READY=1\nSTATUS=" + std::to_string(buckets) + " buckets");
}

void ServiceManager::buckets_changed(std::size_t buckets)
{
    if (!ready_ || told_buckets_ == buckets)
        return;
    told_buckets_ = buckets;
    notify("STATUS=" + std::to_string(buckets) + " buckets");
}

void ServiceManager::stopping(const std::string& why)
{
    notify("STOPPING=1\nSTATUS=" + why);
}

void ServiceManager::pet_watchdog()
{
    // Every half period, as sd_watchdog_enabled(3) advises: one late turn of
    // a busy loop is not yet a missed deadline. From the loop itself, so a
    // loop that hangs stops the pings and systemd restarts registryd.
    notify("WATCHDOG=1");
    watchdog_timer_.expires_after(*watchdog_timeout_ / 2);
    watchdog_timer_.async_wait([this](const boost::system::error_code& error) {
        if (!error)
            pet_watchdog();
    });
}

} // namespace kv
