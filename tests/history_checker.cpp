// The checks of history_checker.h: one owner at a time, nothing acknowledged
// lost, nothing refused done.
#include "history_checker.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace kv::test {

std::string to_string(const Owner& owner) { return owner.node + "/" + std::to_string(owner.pid); }

void History::add(Write write)
{
    std::lock_guard lock(mutex_);
    if (write.outcome == Outcome::acknowledged)
        ++acknowledged_[write.owner];
    writes_.push_back(std::move(write));
}

std::size_t History::acknowledged_by(const Owner& owner) const
{
    std::lock_guard lock(mutex_);
    const auto found = acknowledged_.find(owner);
    return found == acknowledged_.end() ? 0 : found->second;
}

std::vector<Write> History::writes() const
{
    std::lock_guard lock(mutex_);
    return writes_;
}

std::int64_t history_now_ns()
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

namespace {

// An instant as milliseconds after `origin` (the history's first invoke),
// so that a message's times can be compared at a glance.
std::string at(std::int64_t ns, std::int64_t origin)
{
    char text[32];
    std::snprintf(text, sizeof text, "%.3f ms", static_cast<double>(ns - origin) / 1e6);
    return text;
}

// Of one owner's acknowledged writes, the two that bound when it surely
// accepted writes: it accepted one no later than `earliest_completed`
// completed, and one no earlier than `latest_invoked` was invoked.
struct Tenure {
    const Write* earliest_completed = nullptr;
    const Write* latest_invoked = nullptr;
};

// Whether `first` may have accepted all its writes before `second` accepted
// any: place first's writes at their invokes and second's at their completes.
bool may_precede(const Tenure& first, const Tenure& second)
{
    return first.latest_invoked->invoked_ns < second.earliest_completed->completed_ns;
}

} // namespace

std::vector<std::string> overlapping_owners(const std::vector<Write>& writes)
{
    std::int64_t origin = 0;
    std::map<Owner, Tenure> tenures;
    for (const auto& write : writes) {
        origin = origin == 0 ? write.invoked_ns : std::min(origin, write.invoked_ns);
        if (write.outcome != Outcome::acknowledged)
            continue;
        Tenure& tenure = tenures[write.owner];
        if (!tenure.earliest_completed || write.completed_ns < tenure.earliest_completed->completed_ns)
            tenure.earliest_completed = &write;
        if (!tenure.latest_invoked || write.invoked_ns > tenure.latest_invoked->invoked_ns)
            tenure.latest_invoked = &write;
    }
    std::vector<std::string> problems;
    for (auto x = tenures.begin(); x != tenures.end(); ++x)
        for (auto y = std::next(x); y != tenures.end(); ++y) {
            if (may_precede(x->second, y->second) || may_precede(y->second, x->second))
                continue;
            // Neither order: y accepted a write before x accepted one, and
            // x accepted one before y accepted one.
            const Write& x_late = *x->second.latest_invoked;
            const Write& y_early = *y->second.earliest_completed;
            const Write& y_late = *y->second.latest_invoked;
            const Write& x_early = *x->second.earliest_completed;
            problems.push_back("owners " + to_string(x->first) + " and " + to_string(y->first) + " accepted writes at the same time: "
                + to_string(y->first) + " acknowledged " + y_early.key + " (completed at " + at(y_early.completed_ns, origin) + ") before "
                + to_string(x->first) + " acknowledged " + x_late.key + " (invoked at " + at(x_late.invoked_ns, origin) + "), and "
                + to_string(x->first) + " acknowledged " + x_early.key + " (completed at " + at(x_early.completed_ns, origin) + ") before "
                + to_string(y->first) + " acknowledged " + y_late.key + " (invoked at " + at(y_late.invoked_ns, origin) + ")");
        }
    return problems;
}

std::vector<std::string> lost_or_phantom_writes(
    const std::vector<Write>& writes, const Owner& final_owner, const std::map<std::string, std::string>& final_state)
{
    std::vector<std::string> problems;
    for (const auto& write : writes) {
        if (write.owner != final_owner)
            continue;
        const auto found = final_state.find(write.key);
        if (write.outcome == Outcome::acknowledged) {
            if (found == final_state.end())
                problems.push_back("write " + write.key + " acknowledged by the final owner " + to_string(final_owner) + " was lost");
            else if (found->second != write.value)
                problems.push_back("write " + write.key + " acknowledged by the final owner " + to_string(final_owner) + " holds "
                    + found->second + ", not the value written, " + write.value);
        } else if (write.outcome == Outcome::refused && found != final_state.end()) {
            problems.push_back("write " + write.key + " refused by the final owner " + to_string(final_owner) + " (" + write.reply
                + ") took effect: its key holds " + found->second);
        }
    }
    return problems;
}

std::vector<std::string> check_history(
    const std::vector<Write>& writes, const Owner& final_owner, const std::map<std::string, std::string>& final_state)
{
    auto problems = overlapping_owners(writes);
    auto lost = lost_or_phantom_writes(writes, final_owner, final_state);
    problems.insert(problems.end(), lost.begin(), lost.end());
    return problems;
}

} // namespace kv::test
