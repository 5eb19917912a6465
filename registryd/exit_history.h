// ExitHistory: the last exits registryd saw, newest first, in a ring of a
// fixed size (--history-size, 1,000 by default; 0 keeps none). A dead bucket
// leaves LIST at once; this is where its name, pid, id, reason and times stay
// for HISTORY and `kvctl history`. Kept in memory only: a new registryd
// starts with an empty history.
#pragma once

#include <cstddef>
#include <deque>

#include "exit_record.h"

namespace kv {

class ExitHistory {
public:
    explicit ExitHistory(std::size_t capacity) : capacity_(capacity) {}

    // Keeps `record` as the newest; the oldest goes once `capacity` are kept.
    void add(ExitRecord record);

    std::size_t capacity() const { return capacity_; }
    std::size_t size() const { return records_.size(); }
    // Newest first.
    const ExitRecord& operator[](std::size_t index) const { return records_[index]; }

private:
    std::size_t capacity_;
    std::deque<ExitRecord> records_; // front: the newest
};

} // namespace kv
