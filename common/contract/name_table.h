// The name table: registryd publishes name -> {pid, id, socket, segment,
// generation} in a shared segment, as the guide's registry publishes its
// names in an ETS table, so a LOOKUP needs no round trip to registryd.
//
// Same guarantee as the guide's: CREATE replies only after the table has the
// entry; once registryd has handled an exit, the entry is gone.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "bucket_record.h"
#include "shared_table.h"

namespace kv {

// registryd's side.
class NameTableWriter {
public:
    // Creates the table at `segment_name`, which must not exist yet (see
    // new_segment_name: a random name nobody else can have taken).
    explicit NameTableWriter(const std::string& segment_name, std::size_t size = 64 * 1024 * 1024);
    // False if the table is full (registryd then refuses the bucket).
    bool publish(const std::string& name, const BucketRecord& record);
    void withdraw(const std::string& name);
    void publish_alive() { table_.publish_alive(); }
    int descriptor() const { return table_.descriptor(); }

private:
    SharedTableWriter table_;
    unsigned long long generation_ = 0;
};

// A client's side.
class NameTableReader {
public:
    // The table at `segment_name` (from the instance record), trusted only if
    // `owner` (the run dir's owner) made it and its registryd still runs;
    // else empty.
    static std::unique_ptr<NameTableReader> open(const std::string& segment_name, uid_t owner);

    enum class Result { found, missing, unavailable };
    // `unavailable`: the table cannot answer (registryd gone, or a write in
    // progress for too long); ask registryd over its socket instead.
    Result lookup(const std::string& name, BucketRecord& record) const;

private:
    explicit NameTableReader(std::unique_ptr<SharedTableReader> table) : table_(std::move(table)) {}
    std::unique_ptr<SharedTableReader> table_;
    mutable std::string scratch_;
};

} // namespace kv
