// pagebench: what a TLB miss costs on this machine, measured apart from
// everything of ours. A direct GET over 1,000,000 keys reads one random
// 64-byte slot of a 128 MiB index, and BENCHMARKS.md says that read is bound
// by one cache miss and one TLB miss. Here the same access pattern (one
// random, aligned 64-byte line of a region of that size) runs over
// anonymous memory twice, alternating: in 4 KiB pages, as a /dev/shm segment
// is mapped here, and in transparent huge pages (madvise(MADV_HUGEPAGE);
// anonymous memory may have them on this machine, a /dev/shm segment may
// not). What the huge pages save is the TLB's share.
//
//   pagebench [--mib N] [--reads N] [--rounds N]
//
// Prints one JSON object per round and page size: ns per read (thread CPU
// time), independent and dependent, and how much of the region the kernel
// backed with huge pages.
#include <sys/mman.h>
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>

#include <CLI/CLI.hpp>

namespace {

double thread_cpu_seconds()
{
    timespec now;
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

// AnonHugePages of this process, in KiB: how much the kernel really backed
// with huge pages (madvise is a request).
long anon_huge_kib()
{
    std::ifstream status("/proc/self/smaps_rollup");
    std::string word;
    while (status >> word) {
        if (word == "AnonHugePages:") {
            long kib = 0;
            status >> kib;
            return kib;
        }
    }
    return -1;
}

struct alignas(64) Line {
    std::uint64_t word[8];
};

void round(std::size_t mib, std::uint64_t reads, bool huge, int number)
{
    const std::size_t bytes = mib << 20;
    // Aligned to 2 MiB so every huge page can be a huge page.
    void* mapped = ::mmap(nullptr, bytes + (2u << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) {
        std::perror("pagebench: mmap");
        std::exit(1);
    }
    auto* region = reinterpret_cast<Line*>((reinterpret_cast<std::uintptr_t>(mapped) + (2u << 20) - 1) & ~std::uintptr_t((2u << 20) - 1));
    ::madvise(region, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    const std::uint64_t lines = bytes / sizeof(Line);
    for (std::uint64_t i = 0; i < lines; ++i)
        region[i].word[0] = i; // touched, so every page exists before the clock starts
    const long huge_kib = anon_huge_kib();

    // Independent reads, which the core overlaps as far as it can, and
    // dependent ones (each address waits for the read before it), which
    // it cannot: one read's whole latency each.
    std::mt19937_64 random(42);
    std::uint64_t sum = 0;
    double start = thread_cpu_seconds();
    for (std::uint64_t n = 0; n < reads; ++n)
        sum += region[random() % lines].word[0];
    const double independent = thread_cpu_seconds() - start;
    std::uint64_t last = 0;
    start = thread_cpu_seconds();
    for (std::uint64_t n = 0; n < reads; ++n)
        last = region[(random() ^ (last & 1)) % lines].word[0];
    const double dependent = thread_cpu_seconds() - start;
    std::printf("{\"round\":%d,\"pages\":\"%s\",\"mib\":%zu,\"ns_per_independent_read\":%.1f,"
                "\"ns_per_dependent_read\":%.1f,\"anon_huge_mib\":%ld,\"check\":%llu}\n",
        number, huge ? "2M" : "4K", mib, independent * 1e9 / static_cast<double>(reads),
        dependent * 1e9 / static_cast<double>(reads), huge_kib / 1024, static_cast<unsigned long long>((sum + last) % 1000));
    std::fflush(stdout);
    ::munmap(mapped, bytes + (2u << 20));
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app("pagebench: random 64-byte reads over anonymous memory, 4 KiB pages against huge pages");
    std::size_t mib = 128;
    std::uint64_t reads = 20'000'000;
    int rounds = 3;
    app.add_option("--mib", mib, "Region size in MiB (a 1,000,000-key index is 128)")->capture_default_str();
    app.add_option("--reads", reads, "Reads per round")->capture_default_str();
    app.add_option("--rounds", rounds, "Rounds, each 4 KiB then huge pages")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    for (int i = 1; i <= rounds; ++i) {
        round(mib, reads, false, i);
        round(mib, reads, true, i);
    }
    return 0;
}
