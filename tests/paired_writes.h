// Test support: is a change of several keys atomic for a direct
// shared-memory reader? A client keeps setting a, then 30 other keys, then b,
// all to the same rising counter, as one unit (an MSET, a MULTI ... EXEC
// block); a reader thread that maps the bucket's segment reads a and then b,
// and must always find b at least a. If the unit landed in separate write
// windows, the reader would catch b behind a, and for a while (the filler
// keys in between), not for a few nanoseconds.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "client.h"

namespace kv::test {

// One way of sending the unit: what differs between the tests that use it.
struct PairedChange {
    std::string what; // "an MSET": names the unit in a failure ("half an MSET: a=...")
    // The requests that set these (key, value) pairs, in this order, as one unit.
    std::function<std::string(const std::vector<std::pair<std::string, std::string>>& pairs)> encode;
    // Reads the replies to one unit of `pairs` pairs, asserting each (gtest ASSERTs).
    std::function<void(Client& client, std::size_t pairs)> read_replies;
    int pipelined = 16; // units sent before their replies are read
};

// Runs the writer and the reader against a bucket of a fresh registryd until
// the reader has made 20,000 reads while units were landing (and at least
// 20,000 units went), and fails the test if it ever saw half of one.
void expect_direct_reader_never_sees_half(const PairedChange& change);

} // namespace kv::test
