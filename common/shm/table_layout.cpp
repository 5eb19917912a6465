#include "table_layout.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <time.h>

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
    // The last 0 to 7 bytes, as a little-endian word padded with zeros (a
    // memcpy of that many bytes into a zeroed word; x86-64 is little-endian),
    // without a call: a key of 8 bytes or more gives them as the top of its
    // last 8 bytes; a shorter one is read in at most two overlapping loads.
    const std::size_t rest = key.size() - i;
    std::uint64_t tail = 0;
    if (rest > 0 && key.size() >= 8) {
        std::uint64_t last;
        std::memcpy(&last, key.data() + key.size() - 8, 8);
        tail = last >> (8 * (8 - rest));
    } else if (rest >= 4) {
        std::uint32_t first, last;
        std::memcpy(&first, key.data(), 4);
        std::memcpy(&last, key.data() + rest - 4, 4);
        tail = first | (std::uint64_t(last) << (8 * (rest - 4)));
    } else if (rest > 0) {
        tail = static_cast<unsigned char>(key[0]);
        if (rest >= 2)
            tail |= std::uint64_t(static_cast<unsigned char>(key[1])) << 8;
        if (rest == 3)
            tail |= std::uint64_t(static_cast<unsigned char>(key[2])) << 16;
    }
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

std::uint64_t unix_time_ms()
{
    struct timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    return static_cast<std::uint64_t>(now.tv_sec) * 1000 + static_cast<std::uint64_t>(now.tv_nsec) / 1'000'000;
}

} // namespace layout

} // namespace kv
