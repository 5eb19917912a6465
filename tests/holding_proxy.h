// HoldingProxy: a TCP proxy in front of one etcd member, for the cluster
// tests that need one request of registryd's to reach etcd late, on cue,
// instead of hoping a race happens.
//
// registryd's etcd client sends one HTTP request per connection
// (Connection: close). The proxy reads each connection's request whole
// (headers and Content-Length body), records it, and holds it while the
// test's predicate says so, until release_held(); then it connects to etcd,
// sends the request, and copies bytes both ways until either side closes
// (a watch's stream included). One thread per connection: a test makes a
// few dozen.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "unique_fd.h"

namespace kv::test {

class HoldingProxy {
public:
    // Listens on a free loopback port, for etcd at `upstream` ("http://127.0.0.1:PORT").
    explicit HoldingProxy(const std::string& upstream);
    // Closes every connection and joins every thread (held requests are dropped).
    ~HoldingProxy();
    HoldingProxy(const HoldingProxy&) = delete;
    HoldingProxy& operator=(const HoldingProxy&) = delete;

    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

    // From now on, a request whose whole text satisfies `hold` waits in the
    // proxy until release_held() (nullptr: none is held; the default).
    void hold_if(std::function<bool(const std::string& request)> hold);
    // Lets every request held so far go on to etcd (later ones that satisfy
    // the predicate are held again).
    void release_held();
    // Waits until a request that satisfies `match` has arrived (held or
    // not), at most `deadline`; false if none did.
    bool wait_for(const std::function<bool(const std::string& request)>& match, std::chrono::milliseconds deadline);
    // Forgets every request that has arrived so far (for seen and wait_for).
    void forget_seen();
    // Whether one has arrived, now.
    bool seen(const std::function<bool(const std::string& request)>& match) const;

private:
    void accept_loop();
    void serve(UniqueFd client);

    unsigned port_ = 0;
    unsigned upstream_port_ = 0;
    UniqueFd listener_;
    UniqueFd wake_read_, wake_write_; // written once when stopping: every poll sees it
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::function<bool(const std::string&)> hold_;
    unsigned long long releases_ = 0;
    bool stopping_ = false;
    std::vector<std::string> requests_;
    std::vector<std::thread> connections_; // one per connection, added by the accept loop under `mutex_`
    std::thread accept_thread_;
};

} // namespace kv::test
