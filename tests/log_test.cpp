#include "log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <string>
#include <utility>

#include <gtest/gtest.h>

TEST(Log, PrintableEscapesControlBytesAndBackslashes)
{
    EXPECT_EQ(kv::printable(std::string("a\nb\0", 4)), "a\\x0ab\\x00");
    EXPECT_EQ(kv::printable("C:\\dir \x1b[31m"), "C:\\x5cdir \\x1b[31m");
    EXPECT_EQ(kv::printable("plain name"), "plain name");
}

TEST(Log, TimestampedLinesCarryAnRfc3339UtcTimeToTheMillisecondAndALevel)
{
    std::timespec at { 1795803367, 123999999 }; // 2026-11-27T18:16:07.123999999Z
    EXPECT_EQ(kv::format_log_line(kv::LogFormat::timestamped, kv::LogLevel::warning, "registryd[42]: ", at, "bucket a died"),
        "2026-11-27T18:16:07.123Z warning registryd[42]: bucket a died\n");
    std::timespec epoch { 0, 0 };
    EXPECT_EQ(kv::format_log_line(kv::LogFormat::timestamped, kv::LogLevel::debug, "p: ", epoch, "x"),
        "1970-01-01T00:00:00.000Z debug p: x\n");
}

TEST(Log, JournalLinesCarryTheSdDaemonPriorityInsteadOfATime)
{
    std::timespec at { 1795803367, 0 };
    const std::pair<kv::LogLevel, std::string> expected[] = { { kv::LogLevel::error, "<3>" }, { kv::LogLevel::warning, "<4>" },
        { kv::LogLevel::notice, "<5>" }, { kv::LogLevel::info, "<6>" }, { kv::LogLevel::debug, "<7>" } };
    for (const auto& [level, prefix] : expected)
        EXPECT_EQ(kv::format_log_line(kv::LogFormat::journal, level, "bucketd[7]: ", at, "ready"), prefix + "bucketd[7]: ready\n");
}

TEST(Log, LevelsParseByTheirNamesOnly)
{
    for (auto name : { "error", "warning", "notice", "info", "debug" })
        EXPECT_EQ(kv::to_string(*kv::parse_log_level(name)), name);
    EXPECT_FALSE(kv::parse_log_level("warn"));
    EXPECT_FALSE(kv::parse_log_level("INFO"));
    EXPECT_FALSE(kv::parse_log_level(""));
}

TEST(Log, JournalStreamCountsOnlyWhenItNamesTheDescriptorsFile)
{
    char path[] = "/tmp/kv-log-test-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    struct stat info {};
    ASSERT_EQ(::fstat(fd, &info), 0);
    const std::string matching = std::to_string(info.st_dev) + ":" + std::to_string(info.st_ino);
    EXPECT_TRUE(kv::is_journal_stream(matching.c_str(), fd));
    const std::string other_inode = std::to_string(info.st_dev) + ":" + std::to_string(info.st_ino + 1);
    EXPECT_FALSE(kv::is_journal_stream(other_inode.c_str(), fd));
    EXPECT_FALSE(kv::is_journal_stream(nullptr, fd));
    EXPECT_FALSE(kv::is_journal_stream("garbage", fd));
    EXPECT_FALSE(kv::is_journal_stream((matching + "x").c_str(), fd));
    EXPECT_FALSE(kv::is_journal_stream((std::to_string(info.st_dev) + ":").c_str(), fd)) << "no inode";
    EXPECT_FALSE(kv::is_journal_stream(std::to_string(info.st_dev).c_str(), fd)) << "no colon";
    ::close(fd);
    ::unlink(path);
}

TEST(Log, RateLimitLetsABurstThroughThenCountsWhatItHoldsBack)
{
    kv::RateLimitedLog limit(10, 20);
    auto start = kv::RateLimitedLog::Clock::now();
    int written = 0;
    for (int i = 0; i < 1000; ++i)
        written += limit.admit(start).write;
    EXPECT_EQ(written, 20) << "a burst of 1000 at one instant lets exactly the burst through";
    // A tenth of a second later one token is back: the next line goes, and
    // says how many were held back.
    auto later = limit.admit(start + std::chrono::milliseconds(100));
    EXPECT_TRUE(later.write);
    EXPECT_EQ(later.suppressed, 980u);
    EXPECT_FALSE(limit.admit(start + std::chrono::milliseconds(100)).write);
    // A full second refills ten, not more than the burst after a long quiet.
    auto quiet = start + std::chrono::hours(1);
    written = 0;
    for (int i = 0; i < 100; ++i)
        written += limit.admit(quiet).write;
    EXPECT_EQ(written, 20);
}
