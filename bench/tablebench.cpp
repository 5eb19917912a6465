// tablebench: the direct GET's own cost, in one process with nothing else in
// the way: a SharedTableWriter fills a table with `keys` pairs (16-byte keys,
// 16-byte values, as BENCHMARKS.md's direct reads), and a SharedTableReader
// that maps the same segment reads random keys from it, each value checked.
// No registryd, no bucketd, no socket: what it measures is the reader's read
// path (hash, probe, key compare, value copy, the seqlock and the fault
// guard), so a change to common/shm can be compared run for run.
//
//   tablebench [--keys N] [--gets N] [--rounds N] [--batch N]
//
// Prints one JSON object per round: ns per GET and GETs per second, by the
// wall clock and by this thread's CPU time (which a busy machine disturbs less).
// --batch N (N > 1) reads the keys N at a time, each batch one get_many (a
// direct MGET): "gets" then counts keys read.
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "bench_keys.h"
#include "shared_table.h"

namespace {

using Clock = std::chrono::steady_clock;

// This thread's CPU time: on a shared, loaded machine the wall clock also
// counts the time other processes had the core, which is most of it.
double thread_cpu_seconds()
{
    timespec now;
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

[[noreturn]] void fail(const std::string& why)
{
    std::fprintf(stderr, "tablebench: %s\n", why.c_str());
    std::exit(1);
}

// The same keys and values as kvbench's direct-get (bench_keys.h).
using kv::bench::fixed_key;
using kv::bench::fixed_value;
using kv::bench::is_value_of;

} // namespace

int main(int argc, char** argv)
{
    std::uint64_t keys = 1000;
    std::uint64_t gets = 0; // per round; 0: chosen from `keys`
    int rounds = 5;
    std::size_t batch = 1;
    CLI::App app { "tablebench: direct GETs from a table written in the same process" };
    app.add_option("--keys", keys);
    app.add_option("--gets", gets);
    app.add_option("--rounds", rounds);
    app.add_option("--batch", batch)->check(CLI::Range(std::size_t(1), std::size_t(4096)));
    CLI11_PARSE(app, argc, argv);
    if (keys == 0)
        fail("--keys must be at least 1");
    if (gets == 0)
        gets = keys >= 100000 ? 5'000'000 : 20'000'000;

    // Room for an index of up to 4 slots (64 bytes each) per key, and more;
    // the segment is sparse, so only what is used takes memory.
    const std::size_t size = std::max<std::size_t>(64 << 20, keys * 512);
    const std::string name = "kv-tablebench-" + std::to_string(::getpid());
    kv::SharedTableWriter writer(name, size, kv::TableKind::bucket);
    writer.publish_alive();
    for (std::uint64_t i = 0; i < keys; ++i)
        if (writer.set(fixed_key(i), fixed_value(i)) != kv::SharedTableWriter::SetResult::stored)
            fail("table full at key " + std::to_string(i));
    auto reader = kv::SharedTableReader::open(name, kv::TableKind::bucket, ::getuid());
    if (!reader)
        fail("unable to map " + name);

    // Keys side by side in one array, as kvbench has them: the harness adds
    // no cache miss of its own.
    std::vector<char> flat(keys * 16);
    for (std::uint64_t i = 0; i < keys; ++i)
        std::memcpy(flat.data() + i * 16, fixed_key(i).data(), 16);

    std::mt19937_64 random(1);
    std::string value;
    std::vector<std::string_view> batch_keys(batch);
    std::vector<std::string> batch_values(batch);
    std::vector<kv::SharedTableReader::Result> batch_results(batch);
    gets -= gets % batch;
    for (int round = 0; round < rounds; ++round) {
        const auto start = Clock::now();
        const double cpu_start = thread_cpu_seconds();
        if (batch == 1) {
            for (std::uint64_t n = 0; n < gets; ++n) {
                std::string_view key(flat.data() + (random() % keys) * 16, 16);
                if (reader->get(key, value) != kv::SharedTableReader::Result::found)
                    fail("direct GET missed key " + std::string(key));
                if (!is_value_of(key, value))
                    fail("direct GET of " + std::string(key) + " returned " + value + ", not its value");
            }
        } else {
            for (std::uint64_t n = 0; n < gets; n += batch) {
                for (auto& key : batch_keys)
                    key = std::string_view(flat.data() + (random() % keys) * 16, 16);
                if (reader->get_many(batch_keys, batch_values, batch_results) != kv::SharedTableReader::Result::found)
                    fail("direct MGET failed");
                for (std::size_t i = 0; i < batch; ++i) {
                    if (batch_results[i] != kv::SharedTableReader::Result::found)
                        fail("direct MGET missed key " + std::string(batch_keys[i]));
                    if (!is_value_of(batch_keys[i], batch_values[i]))
                        fail("direct MGET of " + std::string(batch_keys[i]) + " returned " + batch_values[i] + ", not its value");
                }
            }
        }
        const double cpu = thread_cpu_seconds() - cpu_start;
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        std::printf("{\"bench\":\"table-get\",\"keys\":%llu,\"batch\":%zu,\"round\":%d,\"ns_per_get\":%.1f,\"gets_per_s\":%.0f,"
                    "\"cpu_ns_per_get\":%.1f,\"gets_per_cpu_s\":%.0f}\n",
            static_cast<unsigned long long>(keys), batch, round, seconds * 1e9 / gets, gets / seconds, cpu * 1e9 / gets, gets / cpu);
        std::fflush(stdout);
    }
    return 0;
}
