#include "mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "segment_file.h"
#include "system_error.h"
#include "unique_fd.h"

namespace {

constexpr std::size_t page = 4096;

// A segment of `size` bytes under a name of this test's own, removed at the end.
struct Segment {
    Segment(const char* test, std::size_t size)
        : name("/kv.mappingtest." + std::to_string(getpid()) + "." + test)
        , fd(kv::create_segment(name))
    {
        if (ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
            throw kv::SystemError("unable to size segment", name, errno);
    }
    ~Segment() { kv::remove_segment_if_same(name, fd.get()); }
    std::string name;
    kv::UniqueFd fd;
};

// Where segment `name` is mapped, as /proc/self/maps lists it: what the
// kernel says is mapped, whatever a Mapping thinks.
std::vector<std::uintptr_t> mappings_of(const std::string& name)
{
    std::ifstream maps("/proc/self/maps");
    std::vector<std::uintptr_t> starts;
    for (std::string line; std::getline(maps, line);)
        if (line.ends_with("/dev/shm" + name))
            starts.push_back(std::stoull(line, nullptr, 16));
    return starts;
}

bool is_mapped_at(const std::string& name, const void* base)
{
    return std::ranges::count(mappings_of(name), reinterpret_cast<std::uintptr_t>(base)) == 1;
}

} // namespace

TEST(Mapping, MovesItsPagesAndUnmapsThemExactlyOnce)
{
    Segment segment("moves", 2 * page);
    char* base = nullptr;
    char* replaced = nullptr;
    {
        kv::Mapping owner;
        {
            kv::Mapping first = kv::Mapping::map(segment.fd.get(), 2 * page, kv::Access::read_write, "segment " + segment.name);
            ASSERT_TRUE(first);
            base = first.base();
            EXPECT_EQ(first.size(), 2 * page);
            base[0] = 'x';
            EXPECT_TRUE(is_mapped_at(segment.name, base));

            kv::Mapping second(std::move(first));
            EXPECT_FALSE(first) << "a moved-from mapping is empty";
            EXPECT_EQ(first.base(), nullptr);
            EXPECT_EQ(first.size(), 0u);
            EXPECT_EQ(second.base(), base);
            EXPECT_EQ(second.size(), 2 * page);
            EXPECT_EQ(second.base()[0], 'x');

            owner = kv::Mapping::map(segment.fd.get(), page, kv::Access::read_only, "segment " + segment.name);
            replaced = owner.base();
            EXPECT_EQ(mappings_of(segment.name).size(), 2u);
            owner = std::move(second); // its own pages go; second's move in
            EXPECT_FALSE(second);
            EXPECT_FALSE(is_mapped_at(segment.name, replaced)) << "the mapping it held is unmapped";
            EXPECT_EQ(owner.base(), base);
        } // first and second, both moved from, are destroyed here
        EXPECT_TRUE(is_mapped_at(segment.name, base)) << "a moved-from mapping unmapped what it gave away";
        EXPECT_EQ(mappings_of(segment.name).size(), 1u);
        EXPECT_EQ(owner.base()[0], 'x');
    }
    EXPECT_TRUE(mappings_of(segment.name).empty()) << "the last owner unmaps when it goes";
}

TEST(Mapping, EmptyOneMapsAndUnmapsNothing)
{
    kv::Mapping empty;
    EXPECT_FALSE(empty);
    EXPECT_EQ(empty.base(), nullptr);
    EXPECT_EQ(empty.size(), 0u);
    kv::Mapping other(std::move(empty));
    EXPECT_FALSE(other);
}

TEST(Mapping, AFailureSaysWhichObjectAndWhy)
{
    Segment segment("refused", page);
    kv::UniqueFd read_only(shm_open(segment.name.c_str(), O_RDONLY | O_CLOEXEC, 0));
    ASSERT_TRUE(read_only);
    try {
        kv::Mapping mapping = kv::Mapping::map(read_only.get(), page, kv::Access::read_write, "segment " + segment.name);
        ADD_FAILURE() << "mapped a read-only descriptor for writing";
    } catch (const kv::SystemError& error) {
        EXPECT_EQ(error.error(), EACCES);
        EXPECT_EQ(std::string(error.what()), "unable to map segment " + segment.name + ": Permission denied");
    }
    errno = 0;
    EXPECT_FALSE(kv::Mapping::try_map(read_only.get(), page, kv::Access::read_write));
    EXPECT_EQ(errno, EACCES) << "try_map leaves mmap's errno";
    EXPECT_TRUE(kv::Mapping::try_map(read_only.get(), page, kv::Access::read_only));
    EXPECT_TRUE(mappings_of(segment.name).empty());
}
