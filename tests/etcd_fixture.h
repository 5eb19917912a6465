// Test support for kv's cluster mode: a real etcd (Debian's etcd-server,
// /usr/bin/etcd found on PATH) of one or more members on loopback, each a
// child of the test in its own temporary data dir, watched through a pidfd.
// Nothing here sleeps to synchronise: a member is ready when it sends
// READY=1 on its NOTIFY_SOCKET (etcd calls sd_notify once it serves
// clients), and a stopped member is gone when its pidfd says so; every wait
// has a deadline (scaled(), daemon_fixture.h) so a bug fails instead of hanging.
// Members run through setpriv --pdeathsig KILL: a test that dies without its
// destructors takes them with it. Create a cluster on the thread that uses it.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon_fixture.h"
#include "unique_fd.h"

namespace kv::test {

// "" if etcd can be run here, else what is missing:
// for KV_REQUIRE(etcd_missing().empty(), etcd_missing()).
std::string etcd_missing();

struct EtcdOptions {
    std::size_t members = 1;
};

class EtcdCluster {
public:
    // Starts all members and returns once each is ready to serve clients.
    // Throws std::runtime_error (with the failing member's last log lines)
    // if they are not ready within scaled(30s).
    explicit EtcdCluster(EtcdOptions options = {});
    // SIGKILLs every member still running, waits for each through its pidfd,
    // and removes the data dirs (the whole temporary directory).
    ~EtcdCluster();
    EtcdCluster(const EtcdCluster&) = delete;
    EtcdCluster& operator=(const EtcdCluster&) = delete;

    std::size_t members() const { return members_.size(); }
    std::string client_url(std::size_t member) const; // "http://127.0.0.1:PORT"
    std::string client_urls() const;                  // every member's client URL, joined by ','

    // Signals the member and waits for its exit (pidfd); SIGKILLs it if
    // another signal has not ended it within scaled(30s), and then throws.
    // If the others are still a quorum, it returns once they have a leader
    // (a new one, if it was the leader): until then etcd answers a write
    // with 503 "request timed out, possibly due to previous leader failure".
    void kill_member(std::size_t member, int signal = SIGKILL);
    void stop_all();    // SIGKILL every running member and wait: etcd entirely down
    void restart_all(); // start again every member that is down, same ports and data dirs; returns once ready
    bool running(std::size_t member) const;

    // One JSON-gateway call (HTTP/1.1 POST of `json_body` to `path`, e.g.
    // "/v3/kv/range") to the first running member that accepts the
    // connection; returns the response body. Throws std::runtime_error when no
    // member answers, or on a status other than 200.
    std::string post(const std::string& path, const std::string& json_body) const;
    // The same call to one member, running or not (a refused connection throws).
    std::string post_to(std::size_t member, const std::string& path, const std::string& json_body) const;

    // Puts `key` = `value` (base64-encoded for the gateway) through post().
    void put(const std::string& key, const std::string& value) const;
    // Deletes `key` through post().
    void remove(const std::string& key) const;
    // The keys under `prefix` and their values (decoded from base64), read by
    // /v3/kv/range with range_end = prefix with its last byte incremented.
    std::map<std::string, std::string> range_prefix(const std::string& prefix) const;
    // The same read on one member (its own view, through its own URL).
    std::map<std::string, std::string> range_prefix_on(std::size_t member, const std::string& prefix) const;

    // For tests of the fixture and for diagnostics.
    pid_t pid(std::size_t member) const;            // -1 when it is down
    std::string data_dir(std::size_t member) const; // its --data-dir
    std::string log(std::size_t member) const;      // its stdout and stderr, every run appended

private:
    struct Member {
        std::string name;
        int client_port = 0;
        int peer_port = 0;
        std::string data_dir;
        std::string log_path;
        std::string notify_path;
        UniqueFd notify; // the datagram socket its NOTIFY_SOCKET names
        pid_t pid = -1;
        UniqueFd pidfd;
    };

    void start(); // the first start, with fresh ports until none was taken meanwhile
    void choose_ports();
    void spawn(Member& member);
    // Waits for READY=1 from every member in `starting`. Returns false (and
    // the reason in `failure`) when a member exited because one of its ports
    // was taken meanwhile; throws if one exits for another reason or the
    // deadline passes.
    bool wait_ready(const std::vector<std::size_t>& starting, std::string& failure);
    void stop(Member& member, int signal);
    nlohmann::json status_of(std::size_t member) const; // /v3/maintenance/status
    // Once member `dead` (its id, "" for none) is down: waits until the
    // running members, if a quorum, name a leader other than it.
    void wait_for_leader(const std::string& dead) const;
    const Member& at(std::size_t member) const;

    TemporaryDirectory directory_;
    std::string token_;
    std::vector<Member> members_;
};

} // namespace kv::test
