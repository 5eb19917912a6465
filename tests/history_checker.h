// A checker of recorded write histories, for the cluster tests that move a
// name from one node's bucket to another's while clients write to it
// (cluster_integration_test). It is Jepsen's way of testing, kept exact for
// this one scenario: clients record every write they send with the instants
// they invoked it and got its reply (one monotonic clock shared by the whole
// test), which bucket they sent it to (its node and pid: its "owner") and
// what came back; at the end the test reads the final owner's data, and the
// checker says whether the history is one that a single owner at a time could
// have produced.
//
// Each write is a SET of a key no other write uses, so a write's effect is
// exact: its key holds its value or it does not.
//
// What it checks:
// - One owner at a time. A write took effect at some instant between its
//   invoke and its complete. Two owners held the name in turn if their
//   acknowledged writes can be placed so that all of one's come before all of
//   the other's: owner X before owner Y is possible exactly when every write
//   X acknowledged was invoked before every write Y acknowledged completed
//   (place X's writes at their invokes and Y's at their completes). If neither
//   order is possible, both owners accepted writes at the same time.
// - No acknowledged write lost: every write the final owner acknowledged
//   holds its value in the final owner's final state.
// - No refused write done: a write the final owner refused (an error reply,
//   such as CLUSTERDOWN) left no trace in its final state.
// A write whose outcome is unknown (a timeout, a closed connection) may or
// may not have taken effect: it is never held against the history. Writes
// acknowledged by an earlier owner are not looked for in the final state: a
// bucket's data dies with its process (README, Reliability), and the old
// copy is stopped once another node took its name.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace kv::test {

// The bucket that served a write: its node and its pid there.
struct Owner {
    std::string node;
    long long pid = 0;
    auto operator<=>(const Owner&) const = default;
};
std::string to_string(const Owner& owner); // "b/4242"

enum class Outcome {
    acknowledged, // the bucket answered OK
    refused,      // the bucket answered an error: nothing was written
    unknown,      // no reply (a timeout, a closed connection): written or not
};

struct Write {
    Owner owner;
    std::string key;
    std::string value;
    std::int64_t invoked_ns = 0;   // before the request was sent
    std::int64_t completed_ns = 0; // after its reply came (or the client gave up)
    Outcome outcome = Outcome::unknown;
    std::string reply; // the error's text, for a refused write
};

// Every write of a test's clients, in the order they were recorded; safe to
// add to from several threads.
class History {
public:
    void add(Write write);
    std::vector<Write> writes() const;
    // How many writes `owner` acknowledged so far (for a test waiting until
    // its clients have written to a new owner).
    std::size_t acknowledged_by(const Owner& owner) const;

private:
    mutable std::mutex mutex_;
    std::vector<Write> writes_;
    std::map<Owner, std::size_t> acknowledged_;
};

// The instant on the clock every recorded time is taken from
// (CLOCK_MONOTONIC, through std::chrono::steady_clock), in nanoseconds.
std::int64_t history_now_ns();

// Each check returns what it found wrong, one line each; empty: nothing.
// Owners that acknowledged writes at the same time, one line per such pair,
// with a write of each that proves it.
std::vector<std::string> overlapping_owners(const std::vector<Write>& writes);
// Writes `final_owner` acknowledged that `final_state` (key -> value, read
// from that owner at the end) does not hold, and writes it refused that it does.
std::vector<std::string> lost_or_phantom_writes(
    const std::vector<Write>& writes, const Owner& final_owner, const std::map<std::string, std::string>& final_state);
// Both of the above.
std::vector<std::string> check_history(
    const std::vector<Write>& writes, const Owner& final_owner, const std::map<std::string, std::string>& final_state);

} // namespace kv::test
