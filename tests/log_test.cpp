#include "log.h"

#include <gtest/gtest.h>

TEST(Log, PrintableEscapesControlBytesAndBackslashes)
{
    EXPECT_EQ(kv::printable(std::string("a\nb\0", 4)), "a\\x0ab\\x00");
    EXPECT_EQ(kv::printable("C:\\dir \x1b[31m"), "C:\\x5cdir \\x1b[31m");
    EXPECT_EQ(kv::printable("plain name"), "plain name");
}
