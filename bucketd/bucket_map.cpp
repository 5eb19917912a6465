#include "bucket_map.h"

#include <algorithm>
#include <utility>

namespace kv {

BucketMap::BucketMap(std::string segment_name, std::size_t size)
    : table_(std::move(segment_name), size, TableKind::bucket)
{
}

BucketMap::BucketMap(UniqueFd segment_fd, std::string segment_name, std::size_t size)
    : table_(std::move(segment_fd), std::move(segment_name), size, TableKind::bucket)
{
}

BucketMap::BucketMap(UniqueFd segment_fd, std::string segment_name, std::size_t size, SharedTableWriter::KeepData keep)
    : table_(std::move(segment_fd), std::move(segment_name), size, TableKind::bucket, keep)
{
}

BucketMap::~BucketMap() = default;

std::optional<SharedTableWriter::Pair> BucketMap::find(std::string_view key)
{
    auto pair = table_.find(key);
    // The clock is read only for a key that has an expiry time.
    if (pair && pair->expires_at != never_expires && layout::has_expired(pair->expires_at, expiry_clock())) {
        erase_expired(key);
        return std::nullopt;
    }
    return pair;
}

std::optional<std::string_view> BucketMap::get(std::string_view key)
{
    if (auto pair = find(key))
        return pair->value;
    return std::nullopt;
}

bool BucketMap::expire_if_needed(std::string_view key)
{
    auto pair = table_.find(key);
    return pair && pair->expires_at != never_expires && layout::has_expired(pair->expires_at, expiry_clock()) && erase_expired(key);
}

std::uint64_t BucketMap::expiry_clock()
{
    if (clock_freezes_ == 0)
        return now();
    if (frozen_now_ == 0)
        frozen_now_ = now();
    return frozen_now_;
}

bool BucketMap::erase_expired(std::string_view key)
{
    const std::string copy(key); // `key` may be a view into the pair erased
    if (!table_.erase(copy))
        return false;
    ++expired_keys_;
    touch(copy);
    return true;
}

BucketMap::SetResult BucketMap::set_expiry(std::string_view key, std::uint64_t expires_at)
{
    if (table_.set_expiry(key, expires_at) != SharedTableWriter::SetResult::stored)
        return SetResult::full;
    note_expiry(expires_at);
    touch(key);
    return SetResult::stored;
}

BucketMap::SetResult BucketMap::set(std::string_view key, std::string_view value, std::uint64_t expires_at)
{
    if (table_.set(key, value, expires_at) != SharedTableWriter::SetResult::stored)
        return SetResult::full;
    note_expiry(expires_at);
    touch(key);
    return SetResult::stored;
}

bool BucketMap::erase(std::string_view key)
{
    if (expire_if_needed(key))
        return false; // it had expired: there was no such key
    if (!table_.erase(key))
        return false;
    touch(key);
    return true;
}

void BucketMap::clear()
{
    if (open_batches_ > 0)
        watchers_.for_each_watched_key([this](std::string_view key) {
            if (table_.contains(key))
                touched_.emplace_back(key);
        });
    else
        watchers_.touch_existing([this](std::string_view key) { return table_.contains(key); });
    table_.clear();
}

std::uint64_t BucketMap::size() const { return table_.size(); }

std::uint64_t BucketMap::bytes() const { return table_.bytes(); }

void BucketMap::for_each_key(const std::function<void(std::string_view)>& visit)
{
    const std::uint64_t at = expiry_clock();
    table_.for_each([&](std::string_view key, std::string_view, std::uint64_t expires_at) {
        if (!layout::has_expired(expires_at, at))
            visit(key);
    });
}

std::uint64_t BucketMap::scan_step(std::uint64_t cursor, const std::function<void(std::string_view)>& visit)
{
    const std::uint64_t at = expiry_clock();
    std::vector<std::string> expired;
    cursor = table_.scan_step(cursor, [&](std::string_view key, std::uint64_t expires_at) {
        if (layout::has_expired(expires_at, at))
            expired.emplace_back(key);
        else
            visit(key);
    });
    for (const std::string& key : expired)
        erase_expired(key);
    return cursor;
}

std::optional<std::string_view> BucketMap::random_key(std::uint64_t random)
{
    // Each turn deletes an expired key or answers: at most one turn a key.
    for (;;) {
        auto key = table_.random_key(random);
        if (!key)
            return std::nullopt;
        const auto pair = table_.find(*key);
        if (!layout::has_expired(pair->expires_at, expiry_clock()))
            return key;
        erase_expired(*key);
        random = random * 6364136223846793005ULL + 1442695040888963407ULL; // another slot next time (an LCG step)
    }
}

std::uint64_t BucketMap::expire_cycle(std::uint64_t least_slots, std::chrono::steady_clock::duration budget)
{
    if (table_.expiring() == 0)
        return 0;
    std::uint64_t now = BucketMap::now();
    // Nothing known can have expired yet: no walk at all. (A bucket whose
    // only key with a time lives for a day costs a clock read a tick.)
    if (now < next_due_)
        return 0;
    const auto deadline = std::chrono::steady_clock::now() + budget;
    // Slots are looked at in steps of this many: Redis samples 20 keys with
    // a TTL a loop from its expires table, which holds nothing else; ours
    // is the whole index, so a step looks at more.
    constexpr std::uint64_t step = 1024;
    std::uint64_t walked = 0, deleted = 0;
    std::vector<std::string> expired;
    for (;;) {
        const std::uint64_t capacity = table_.capacity();
        if (capacity != sweep_capacity_) {
            // The index was rebuilt: slots moved, so the sweep starts over
            // (the earliest time seen so far still counts).
            sweep_capacity_ = capacity;
            sweep_walked_ = 0;
        }
        std::uint64_t sampled = 0;
        expired.clear();
        expiry_cursor_ = table_.expired_keys(expiry_cursor_, step, now, expired, sampled, sweep_earliest_);
        for (const std::string& key : expired)
            deleted += erase_expired(key);
        walked += step;
        sweep_walked_ += step;
        if (sweep_walked_ >= capacity) {
            // A whole sweep: every key with a time was seen (or set since,
            // and noted by set). None is due before the earliest of them.
            next_due_ = sweep_earliest_;
            sweep_earliest_ = never_due;
            sweep_walked_ = 0;
            break;
        }
        if (table_.expiring() == 0)
            break;
        // More than a tenth of what was sampled had expired: probably more
        // to find, so go on (Redis's ACTIVE_EXPIRE_CYCLE_ACCEPTABLE_STALE).
        const bool stale = expired.size() * 10 > sampled;
        if ((walked >= least_slots && !stale) || std::chrono::steady_clock::now() >= deadline)
            break;
        now = BucketMap::now();
    }
    return deleted;
}

void BucketMap::note_expiry(std::uint64_t expires_at)
{
    if (expires_at == never_expires)
        return;
    next_due_ = std::min(next_due_, expires_at);
    sweep_earliest_ = std::min(sweep_earliest_, expires_at);
}

void BucketMap::touch(std::string_view key)
{
    if (open_batches_ > 0) {
        if (watchers_.watched_keys() > 0)
            touched_.emplace_back(key);
    } else {
        watchers_.touch(key);
    }
}

BucketMap::Batch BucketMap::begin_batch() { return Batch(*this, table_.begin_batch()); }

BucketMap::Batch::Batch(BucketMap& map, SharedTableWriter::Batch table_batch)
    : map_(&map)
    , table_batch_(std::move(table_batch))
    , touched_mark_(map.touched_.size())
{
    ++map.open_batches_;
}

BucketMap::Batch::Batch(Batch&& other) noexcept
    : map_(std::exchange(other.map_, nullptr))
    , table_batch_(std::move(other.table_batch_))
    , touched_mark_(other.touched_mark_)
{
}

BucketMap::Batch::~Batch()
{
    if (!map_)
        return;
    // Dropped uncommitted: the table batch undoes its changes as it goes,
    // and the keys they touched are never told.
    --map_->open_batches_;
    map_->touched_.resize(touched_mark_);
}

void BucketMap::Batch::commit()
{
    BucketMap& map = *std::exchange(map_, nullptr);
    table_batch_.commit();
    if (--map.open_batches_ > 0)
        return; // nested: the outer batch tells them, or forgets them
    for (const std::string& key : map.touched_)
        map.watchers_.touch(key);
    map.touched_.clear();
}

} // namespace kv
