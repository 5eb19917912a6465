// Placement (registryd --placement hash): which live node of the cluster a
// new name goes to. The guide's KV.Router picks a node from a fixed table
// by the name's first letter; here the table is the cluster's membership as
// etcd has it (<prefix>nodes/), and the pick is rendezvous hashing
// (highest random weight): every node gets a score hash(node, name), and
// the name goes to the highest score.
//
// Why rendezvous hashing: every node computes the same pick from the same
// membership with no coordination, names spread evenly, and when a node
// joins it takes about 1/N of new names from every other node alike, while
// a name whose node is still there never moves (its score there is
// unchanged and still the highest of the nodes that were there before).
//
// The hash is XXH3 (libxxhash, Debian's xxhash), seeded with the node's own
// hash: a fixed, documented function, so nodes built by different compilers
// or on different machines agree (std::hash gives no such promise).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kv {

enum class Placement {
    local, // a new name goes to the node that was asked (the default)
    hash,  // a new name goes to the live node rendezvous hashing picks
};
std::optional<Placement> parse_placement(std::string_view text);
const char* to_string(Placement placement);

// Node `node`'s score for `name`: the highest score wins the name.
std::uint64_t placement_score(std::string_view node, std::string_view name);

// The node of `nodes` (node names, in any order, each once) that `name`
// goes to; "" if there is none. Ties, for what a 64-bit hash makes of them,
// go to the greater node name, so the pick never depends on the order.
std::string place(const std::vector<std::string>& nodes, std::string_view name);

} // namespace kv
