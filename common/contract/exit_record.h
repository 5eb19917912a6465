// The exit record: what registryd remembers of a bucket that has exited (its
// HISTORY), with its RESP encoding and its decoder side by side, so registryd
// (which encodes) and kvctl and the tests (which decode) agree on one shape.
//
// Times are Unix times in milliseconds (CLOCK_REALTIME), as Redis's PXAT and
// PEXPIRETIME give them: a number any client can compare and convert, with no
// time zone or format to agree on. kvctl prints them as RFC 3339 UTC.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "resp.h"

namespace kv {

struct ExitRecord {
    std::string name;
    pid_t pid = -1;
    unsigned long long id = 0;
    std::string reason;        // MONITOR's words: "exited with status 0", "killed by SIGKILL"
    long long started_ms = 0;  // when registryd spawned it, Unix ms
    long long ended_ms = 0;    // when registryd reaped it, Unix ms
    std::string restart;       // its restart policy: "temporary", "transient", "permanent"
    unsigned long long restarts = 0; // times it had been restarted before this exit
    // What registryd did next: "removed", "restarting", or why it gave up
    // ("gave up after 4 restarts in 5 s").
    std::string outcome;
};

// name pid id reason started_ms ended_ms restart restarts outcome: a flat field/value array in RESP2,
// a map in RESP3 (as LIST's entries).
void append_resp(std::string& out, const ExitRecord& record, resp::Protocol protocol = resp::Protocol::resp2);
// Empty unless `reply` has every field with its type; fields it does not
// know are ignored (a later registryd may add some).
std::optional<ExitRecord> decode_exit_record(const resp::Value& reply);

} // namespace kv
