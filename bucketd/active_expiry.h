// ActiveExpiry: deletes a bucket's expired keys in the background of its one
// loop, as Redis's activeExpireCycle does 10 times a second (hz 10): keys
// nobody asks for again would otherwise hold their room in the segment for
// ever. Lazy expiry (BucketMap's lookups) and the direct readers' own check
// already make an expired key invisible; this only gives its room back.
//
// The timer runs only while some key has an expiry time: an idle bucket
// without one never wakes (10,000 buckets must not cost 100,000 wakeups a
// second). Each tick is one BucketMap::expire_cycle.
#pragma once

#include <chrono>

#include "asio.h"
#include "bucket_map.h"

namespace kv {

class ActiveExpiry {
public:
    // Redis's hz (10 ticks a second) and its slow cycle's share of it
    // (ACTIVE_EXPIRE_CYCLE_SLOW_TIME_PERC: 25%, so at most 25 ms a tick).
    static constexpr auto period = std::chrono::milliseconds(100);
    static constexpr auto budget = std::chrono::milliseconds(25);
    // At least this many index slots a tick while keys are due (1 MiB of
    // slots, well under a millisecond): a million keys sit in 2^21 slots,
    // swept in 128 ticks, about 13 s. Between sweeps, nothing is walked
    // until the earliest time seen comes (BucketMap::expire_cycle).
    static constexpr std::uint64_t least_slots = 16384;

    ActiveExpiry(asio::io_context& io, BucketMap& map) : timer_(io), map_(map) {}

    // After each request: starts the ticks if a key now has an expiry time.
    // One load and a test when they run already, or no key has one.
    void poke()
    {
        if (!armed_ && map_.expiring() > 0)
            arm();
    }

private:
    void arm();

    asio::steady_timer timer_;
    BucketMap& map_;
    bool armed_ = false;
};

} // namespace kv
