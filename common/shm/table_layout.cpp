#include "table_layout.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace kv {

namespace {

std::uint64_t mix(std::uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

} // namespace

std::uint64_t hash_key(std::string_view key)
{
    std::uint64_t hash = 0x9e3779b97f4a7c15ULL ^ key.size();
    std::size_t i = 0;
    for (; i + 8 <= key.size(); i += 8) {
        std::uint64_t word;
        std::memcpy(&word, key.data() + i, 8);
        hash = mix(hash ^ word);
    }
    std::uint64_t tail = 0;
    std::memcpy(&tail, key.data() + i, key.size() - i);
    return mix(hash ^ tail);
}

namespace layout {

namespace {

bool aligned(const char* p) { return reinterpret_cast<std::uintptr_t>(p) % sizeof(Word) == 0; }

// Calls byte(i) for the unaligned head and tail of [at, at + size) and
// word(i) for each aligned word in between, i being the offset from `at`.
template <typename Byte, typename WordAccess>
void for_each_piece(const char* at, std::size_t size, Byte byte, WordAccess word)
{
    std::size_t i = 0;
    for (; i < size && !aligned(at + i); ++i)
        byte(i);
    for (; size - i >= sizeof(Word); i += sizeof(Word))
        word(i);
    for (; i < size; ++i)
        byte(i);
}

} // namespace

void store_shared_bytes(char* to, const char* from, std::size_t size)
{
    for_each_piece(
        to, size, [&](std::size_t i) { __atomic_store_n(to + i, from[i], __ATOMIC_RELAXED); },
        [&](std::size_t i) {
            Word word;
            std::memcpy(&word, from + i, sizeof word);
            __atomic_store_n(reinterpret_cast<Word*>(to + i), word, __ATOMIC_RELAXED);
        });
}

void zero_shared_bytes(char* to, std::size_t size)
{
    for_each_piece(
        to, size, [&](std::size_t i) { __atomic_store_n(to + i, char(0), __ATOMIC_RELAXED); },
        [&](std::size_t i) { __atomic_store_n(reinterpret_cast<Word*>(to + i), Word(0), __ATOMIC_RELAXED); });
}

} // namespace layout

} // namespace kv
