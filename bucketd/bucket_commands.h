// The bucket's command table: GET, DEL, EXISTS, DBSIZE, KEYS, PING, CONFIG
// GET (for redis-benchmark), MEMORY USAGE (for redis-cli --memkeys), DEBUG
// when enabled, and the string and keyspace commands of data_commands.h
// (SET, MSET, INCR, RENAME, FLUSHDB, ...).
#pragma once

#include <string>

#include <vector>

#include "bucket_map.h"
#include "command_table.h"
#include "resp.h"
#include "responder.h"

namespace kv {

struct BucketContext {
    BucketMap& map;
    bool debug_command_enabled = false;
    // The protocol of the request being run (set by run_bucket_command from
    // its session): handlers write nulls and maps in it.
    resp::Protocol protocol = resp::Protocol::resp2;
};

// Runs one request against the bucket and appends its reply to reply.now(),
// in the session's protocol. DEBUG SEGFAULT and DEBUG EXIT end the process
// here, on purpose, without cleaning up: they exist to let tests crash a
// bucket as a bug would.
void run_bucket_command(BucketContext& context, const resp::Request& request, ReplySink& reply);

// The bucket's table as COMMAND describes it (connection_commands.h).
std::vector<CommandInfo> bucket_command_infos();

} // namespace kv
