// Error codes: the word on the wire and kvctl's exit code come from one table.
#include "error_code.h"

#include <gtest/gtest.h>

#include "resp.h"

TEST(ErrorCode, EveryCodeRoundTripsThroughItsWireWord)
{
    for (auto code : { kv::ErrorCode::not_found, kv::ErrorCode::invalid, kv::ErrorCode::limit, kv::ErrorCode::full,
             kv::ErrorCode::denied, kv::ErrorCode::busy, kv::ErrorCode::error }) {
        auto text = kv::error_text(code, "what happened");
        EXPECT_EQ(kv::error_code_of(text), code) << text;
        EXPECT_EQ(kv::error_message(text), "what happened");
    }
    EXPECT_EQ(kv::error_text(kv::ErrorCode::not_found, "no bucket named x"), "NOTFOUND no bucket named x");
}

TEST(ErrorCode, KvctlExitCodesAreTheDocumentedOnes)
{
    EXPECT_EQ(kv::kvctl_exit_code(kv::ErrorCode::not_found), 1);
    for (auto refused : { kv::ErrorCode::invalid, kv::ErrorCode::limit, kv::ErrorCode::full, kv::ErrorCode::denied })
        EXPECT_EQ(kv::kvctl_exit_code(refused), 4);
    EXPECT_EQ(kv::kvctl_exit_code(kv::ErrorCode::busy), 5);
    EXPECT_EQ(kv::kvctl_exit_code(kv::ErrorCode::error), 5);
    // A word kv never sends (a Redis one, or none) is a plain failure.
    EXPECT_EQ(kv::error_code_of("WRONGTYPE Operation against a key"), kv::ErrorCode::error);
    EXPECT_EQ(kv::error_code_of(""), kv::ErrorCode::error);
}

TEST(ErrorCode, AnErrorReplyIsOneLine)
{
    std::string out;
    kv::append_error(out, kv::ErrorCode::full, "no room\r\nfor this");
    EXPECT_EQ(out.rfind("-FULL no room", 0), 0u);
    EXPECT_EQ(out.find('\n'), out.size() - 1) << out;
}
