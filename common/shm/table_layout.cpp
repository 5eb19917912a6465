#include "table_layout.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <time.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kv {

// XXH3 (libxxhash, Debian's xxhash), compiled in here (XXH_INLINE_ALL): for
// the short keys a table mostly holds, about twenty instructions with no call
// inside, a third of what the mixer it replaced took for a 16-byte key.
// Unseeded and fixed: every process of every build must compute the same tag
// for a key (the layout's version changed with it).
std::uint64_t hash_key(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

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

std::uint64_t unix_time_ms()
{
    struct timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    return static_cast<std::uint64_t>(now.tv_sec) * 1000 + static_cast<std::uint64_t>(now.tv_nsec) / 1'000'000;
}

} // namespace layout

} // namespace kv
