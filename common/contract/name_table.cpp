#include "name_table.h"

#include <unistd.h>

namespace kv {

NameTableWriter::NameTableWriter(const std::string& segment_name, std::size_t size)
    : table_(segment_name, size, TableKind::names)
{
}

bool NameTableWriter::publish(const std::string& name, const BucketRecord& record)
{
    BucketRecord stamped = record;
    stamped.generation = ++generation_;
    return table_.set(name, encode_table_entry(stamped)) == SharedTableWriter::SetResult::stored;
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
        return decode_table_entry(scratch_, record) ? Result::found : Result::unavailable;
    case SharedTableReader::Result::missing:
        return Result::missing;
    default:
        return Result::unavailable;
    }
}

} // namespace kv
