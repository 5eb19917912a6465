#include "small_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "unique_fd.h"

namespace {

// A file of its own under the temp dir, removed at the end of the test.
class TempFile {
public:
    explicit TempFile(const std::string& contents)
    {
        const char* dir = std::getenv("TMPDIR");
        path_ = std::string(dir && *dir ? dir : "/tmp") + "/kv-small-file-XXXXXX";
        fd_.reset(::mkstemp(path_.data()));
        EXPECT_TRUE(fd_) << "mkstemp";
        EXPECT_EQ(::write(fd_.get(), contents.data(), contents.size()), static_cast<ssize_t>(contents.size()));
    }
    ~TempFile() { ::unlink(path_.c_str()); }
    const std::string& path() const { return path_; }
    int fd() const { return fd_.get(); }

private:
    std::string path_;
    kv::UniqueFd fd_;
};

} // namespace

TEST(SmallFile, ReadsAFileWholeFromItsStartWhereverTheDescriptorsOffsetIs)
{
    TempFile file("first line\nsecond line\n");
    // The write left the offset at the end: a plain read would find nothing.
    int error = -1;
    auto text = kv::read_up_to(file.fd(), 1000, error);
    ASSERT_TRUE(text);
    EXPECT_EQ(*text, "first line\nsecond line\n");
    EXPECT_EQ(error, 0);
    text = kv::read_small_file(file.path(), 1000, error);
    ASSERT_TRUE(text);
    EXPECT_EQ(*text, "first line\nsecond line\n");
}

TEST(SmallFile, StopsSoonAfterTheLimitSoALongFileIsNotHeldWhole)
{
    const std::string contents(100000, 'x');
    TempFile file(contents);
    int error = -1;
    auto text = kv::read_small_file(file.path(), 10, error);
    ASSERT_TRUE(text);
    EXPECT_GT(text->size(), 10u) << "more than the limit: the caller can tell the file is too long";
    EXPECT_LT(text->size(), contents.size()) << "but not the whole file";
    EXPECT_EQ(*text, contents.substr(0, text->size()));
    // A file of exactly the limit is read whole and is not too long.
    TempFile exact(std::string(10, 'y'));
    text = kv::read_small_file(exact.path(), 10, error);
    ASSERT_TRUE(text);
    EXPECT_EQ(*text, std::string(10, 'y'));
}

TEST(SmallFile, SaysWhyAFileCannotBeRead)
{
    int error = 0;
    EXPECT_FALSE(kv::read_small_file("/nonexistent-kv-dir/file", 100, error));
    EXPECT_EQ(error, ENOENT);
    error = 0;
    EXPECT_FALSE(kv::read_small_file("/", 100, error)) << "a directory opens but does not read";
    EXPECT_EQ(error, EISDIR);
    error = 0;
    EXPECT_FALSE(kv::read_up_to(-1, 100, error));
    EXPECT_EQ(error, EBADF);
}

TEST(SmallFile, ReadsTheProcFilesKvLooksAt)
{
    int error = -1;
    auto stat = kv::read_small_file("/proc/self/stat", 2048, error);
    ASSERT_TRUE(stat);
    EXPECT_EQ(stat->rfind(std::to_string(::getpid()) + " (", 0), 0u) << *stat;
    EXPECT_EQ(stat->back(), '\n') << "the whole line";
    auto statm = kv::read_small_file("/proc/self/statm", 128, error);
    ASSERT_TRUE(statm);
    EXPECT_EQ(statm->back(), '\n');
}
