// The bucket record: what registryd tells anyone about a bucket, in one type
// with its two encodings side by side: the RESP reply of CREATE, LOOKUP and
// LIST (a flat field/value array, as HGETALL gives), and the text registryd
// publishes in the name table.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "resp.h"

namespace kv {

struct BucketRecord {
    std::string name;
    pid_t pid = -1;
    unsigned long long id = 0;
    std::string socket;  // the bucket's RESP socket
    std::string segment; // its shared-memory segment, for direct reads
    unsigned long long generation = 0; // name table only: when it was published
    // Cluster mode only (registryd --cluster), and then in every reply: the
    // node that runs the bucket. Another node's bucket has no socket or
    // segment here (both "").
    std::string node;
    // With --listen-tcp: the bucket's TCP address, "HOST:PORT" (clients
    // AUTH there); in every reply in cluster mode, "" without TCP.
    std::string address;
};

// LIST's figures about a live bucket, beside its record.
struct BucketStats {
    std::string state; // "starting", "ready", "stopping", "restarting"
    long long uptime_ms = 0;
    std::uint64_t keys = 0;
    std::uint64_t bytes = 0;
    std::uint64_t monitors = 0; // MONITOR calls registered on it
    std::string restart;        // its restart policy: "temporary", "transient", "permanent"
    bool keep = false;          // KEEP: its data survives a restart when provably intact
    std::uint64_t restarts = 0; // times registryd restarted it since its CREATE
    std::string last_exit;      // why the process before this one ended ("" before any restart)
};

// name pid id socket segment [node address] [state uptime_ms keys bytes
// monitors restart keep restarts last_exit]: a flat
// field/value array in RESP2, a map in RESP3.
void append_resp(std::string& out, const BucketRecord& record, const BucketStats* stats = nullptr,
    resp::Protocol protocol = resp::Protocol::resp2);
// Empty unless `reply` has every record field (and every stats field when
// `stats` is given); fields it does not know are ignored.
std::optional<BucketRecord> decode_bucket_record(const resp::Value& reply, BucketStats* stats = nullptr);

// "pid id generation socket-length\nsocket\nsegment": the name table's
// value for a name (the name is its key). Text, so it can be read with any tool.
std::string encode_table_entry(const BucketRecord& record);
// Reuses `record`'s strings: a reader that looks up in a loop allocates nothing.
bool decode_table_entry(std::string_view text, BucketRecord& record);

} // namespace kv
