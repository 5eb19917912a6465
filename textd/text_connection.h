// One client of the text server, served start to end in a process of its
// own (textd/main.cpp forks one per connection): lines in, replies out, in
// order, one request at a time, as the guide's serve/1 loop does.
#pragma once

#include <chrono>
#include <cstddef>

#include "bucket_access.h"

namespace kv::text {

struct ConnectionLimits {
    // A line (its "\r\n" or "\n" not counted) longer than this gets ERROR, then the
    // connection closes: nothing is buffered without bound.
    std::size_t max_line = 64 * 1024;
    // As for RESP sockets: a client stuck mid-line, or not reading its
    // replies, for this long is dropped; an idle one stays.
    std::chrono::milliseconds stall_timeout { 10000 };
};

// Serves connected socket `fd` (non-blocking) until the client hangs up,
// stalls, sends a line over the limit, or a failure ends the connection as
// the guide's error clause does (ERROR, then close). Never throws; says in
// the log why it ended, when that is worth saying. `peer` names the client
// in the log ("127.0.0.1:53422").
void serve_connection(int fd, const std::string& peer, BucketAccess& buckets, const ConnectionLimits& limits);

} // namespace kv::text
