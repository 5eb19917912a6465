#include "placement.h"

#include <xxhash.h>

namespace kv {

std::optional<Placement> parse_placement(std::string_view text)
{
    if (text == "local")
        return Placement::local;
    if (text == "hash")
        return Placement::hash;
    return std::nullopt;
}

const char* to_string(Placement placement)
{
    return placement == Placement::hash ? "hash" : "local";
}

std::uint64_t placement_score(std::string_view node, std::string_view name)
{
    // Seeding the name's hash with the node's (rather than hashing the two
    // joined) keeps "ab"+"c" and "a"+"bc" apart without a separator.
    const XXH64_hash_t seed = XXH3_64bits(node.data(), node.size());
    return XXH3_64bits_withSeed(name.data(), name.size(), seed);
}

std::string place(const std::vector<std::string>& nodes, std::string_view name)
{
    const std::string* best = nullptr;
    std::uint64_t best_score = 0;
    for (const std::string& node : nodes) {
        const std::uint64_t score = placement_score(node, name);
        if (!best || score > best_score || (score == best_score && node > *best)) {
            best = &node;
            best_score = score;
        }
    }
    return best ? *best : std::string();
}

} // namespace kv
