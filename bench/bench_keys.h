// The keys and values the benchmarks read and write, shared by kvbench's
// direct-get and tablebench so that both measure the same table: 16-byte keys
// and values, as BENCHMARKS.md's targets are stated. Key i is "key:" and i in
// 12 digits, its value "val:" and the same digits, so a reader can check
// every value it gets against the key it asked for.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace kv::bench {

inline std::string fixed_key(std::uint64_t i)
{
    char text[32]; // 16 bytes for every i below 10^12
    std::snprintf(text, sizeof text, "key:%012llu", static_cast<unsigned long long>(i));
    return text;
}

inline std::string fixed_value(std::uint64_t i) { return "val:" + fixed_key(i).substr(4); }

// True if `value` is fixed_value(i) for the i of `key` (a fixed_key).
inline bool is_value_of(std::string_view key, std::string_view value)
{
    return value.size() == 16 && value.substr(0, 4) == "val:" && value.substr(4) == key.substr(4);
}

} // namespace kv::bench
