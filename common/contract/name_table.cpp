#include "name_table.h"

#include <unistd.h>

#include <charconv>


namespace kv {

namespace {

// "pid id generation\nsocket\nsegment": text, so it can be read with any tool.
std::string encode(const BucketRecord& record)
{
    return std::to_string(record.pid) + " " + std::to_string(record.id) + " " + std::to_string(record.generation) + "\n"
        + record.socket + "\n" + record.segment;
}

bool decode(std::string_view text, BucketRecord& record)
{
    auto first = text.find('\n');
    auto second = text.find('\n', first + 1);
    if (first == std::string_view::npos || second == std::string_view::npos)
        return false;
    std::string_view numbers = text.substr(0, first);
    long long pid = 0;
    const char* p = numbers.data();
    const char* end = p + numbers.size();
    auto parse = [&](auto& value) {
        while (p < end && *p == ' ')
            ++p;
        auto [next, error] = std::from_chars(p, end, value);
        p = next;
        return error == std::errc();
    };
    if (!parse(pid) || !parse(record.id) || !parse(record.generation))
        return false;
    record.pid = static_cast<pid_t>(pid);
    // assign() reuses the strings' storage: a reader that looks up in a loop allocates nothing.
    record.socket.assign(text.substr(first + 1, second - first - 1));
    record.segment.assign(text.substr(second + 1));
    return true;
}

} // namespace

NameTableWriter::NameTableWriter(const std::string& segment_name, std::size_t size)
    : table_(segment_name, size, TableKind::names)
{
}

bool NameTableWriter::publish(const std::string& name, const BucketRecord& record)
{
    BucketRecord stamped = record;
    stamped.generation = ++generation_;
    return table_.set(name, encode(stamped)) == SharedTableWriter::SetResult::stored;
}

void NameTableWriter::withdraw(const std::string& name) { table_.erase(name); }

std::unique_ptr<NameTableReader> NameTableReader::open(const std::string& segment_name, uid_t owner)
{
    auto table = SharedTableReader::open(segment_name, TableKind::names, owner);
    if (!table)
        return nullptr;
    return std::unique_ptr<NameTableReader>(new NameTableReader(std::move(table)));
}

NameTableReader::Result NameTableReader::lookup(const std::string& name, BucketRecord& record) const
{
    switch (table_->get(name, scratch_)) {
    case SharedTableReader::Result::found:
        return decode(scratch_, record) ? Result::found : Result::unavailable;
    case SharedTableReader::Result::missing:
        return Result::missing;
    default:
        return Result::unavailable;
    }
}

} // namespace kv
