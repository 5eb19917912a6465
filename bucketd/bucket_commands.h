// The bucket's command table: GET, DEL, EXISTS, DBSIZE, KEYS, PING, CONFIG
// GET (for redis-benchmark), DEBUG when enabled, and the string and keyspace
// commands of data_commands.h (SET, MSET, INCR, RENAME, FLUSHDB, ...).
#pragma once

#include <string>

#include "bucket_map.h"
#include "resp.h"

namespace kv {

struct BucketContext {
    BucketMap& map;
    bool debug_command_enabled = false;
};

// Runs one request against the bucket and appends its reply to `out`.
// DEBUG SEGFAULT and DEBUG EXIT end the process here, on purpose, without
// cleaning up: they exist to let tests crash a bucket as a bug would.
void run_bucket_command(BucketContext& context, const resp::Request& request, std::string& out);

} // namespace kv
