#include "exit_history.h"

namespace kv {

void ExitHistory::add(ExitRecord record)
{
    if (capacity_ == 0)
        return;
    if (records_.size() == capacity_)
        records_.pop_back();
    records_.push_front(std::move(record));
}

} // namespace kv
