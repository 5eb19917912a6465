// Session: what CLIENT LIST shows as cmd=, and what RESET restores.
#include <gtest/gtest.h>

#include "session.h"

TEST(Session, NamesTheLastCommandAsRedisDoesInLowerCaseWithContainerSubcommands)
{
    kv::Session session(7, 3);
    EXPECT_EQ(session.last_command(), "NULL");
    session.note_command({ "GET", "milk" });
    EXPECT_EQ(session.last_command(), "get");
    session.note_command({ "Client", "LIST" });
    EXPECT_EQ(session.last_command(), "client|list");
    session.note_command({ "CONFIG", "get", "save" });
    EXPECT_EQ(session.last_command(), "config|get");
    // A verb with spaces or control bytes cannot break CLIENT LIST's line.
    session.note_command({ "a b\nc" });
    EXPECT_EQ(session.last_command(), "a?b?c");
    // Bounded: a huge verb is cut, never copied whole.
    session.note_command({ std::string(1000, 'x') });
    EXPECT_EQ(session.last_command(), std::string(40, 'x'));
}

TEST(Session, ResetRestoresANewConnectionsStateButKeepsItsIdentity)
{
    kv::Session session(7, 3);
    session.protocol = kv::resp::Protocol::resp3;
    session.name = "worker";
    session.transaction.active = true;
    session.transaction.queued.push_back({ "SET", "a", "1" });
    session.transaction.queued_command_malformed = true;
    session.reset();
    EXPECT_EQ(session.protocol, kv::resp::Protocol::resp2);
    EXPECT_EQ(session.name, "");
    EXPECT_FALSE(session.transaction.active);
    EXPECT_TRUE(session.transaction.queued.empty());
    EXPECT_FALSE(session.transaction.queued_command_malformed);
    EXPECT_EQ(session.id(), 7u);
    EXPECT_EQ(session.fd(), 3);
}
