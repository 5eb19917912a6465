// The text server's pure parts: the guide's parse/1 (its doctests, and
// String.split/1's whitespace), the replies, and how registryd reads a
// --text-listen address.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "text_command.h"
#include "text_server.h"

namespace {

using kv::text::Verb;

TEST(TextCommand, TheGuidesDoctestsParseAsTheGuideSays)
{
    // KVServer.Command.parse/1's examples, one by one.
    auto create = kv::text::parse("CREATE shopping\r\n");
    ASSERT_TRUE(create);
    EXPECT_EQ(create->verb, Verb::create);
    EXPECT_EQ(create->bucket, "shopping");

    auto spaced = kv::text::parse("CREATE  shopping  \r\n");
    ASSERT_TRUE(spaced);
    EXPECT_EQ(spaced->verb, Verb::create);
    EXPECT_EQ(spaced->bucket, "shopping");

    auto put = kv::text::parse("PUT shopping milk 1\r\n");
    ASSERT_TRUE(put);
    EXPECT_EQ(put->verb, Verb::put);
    EXPECT_EQ(put->bucket, "shopping");
    EXPECT_EQ(put->key, "milk");
    EXPECT_EQ(put->value, "1");

    auto get = kv::text::parse("GET shopping milk\r\n");
    ASSERT_TRUE(get);
    EXPECT_EQ(get->verb, Verb::get);
    EXPECT_EQ(get->key, "milk");

    auto del = kv::text::parse("DELETE shopping eggs\r\n");
    ASSERT_TRUE(del);
    EXPECT_EQ(del->verb, Verb::del);
    EXPECT_EQ(del->bucket, "shopping");
    EXPECT_EQ(del->key, "eggs");

    // Unknown commands or commands with the wrong number of arguments.
    EXPECT_FALSE(kv::text::parse("UNKNOWN shopping eggs\r\n"));
    EXPECT_FALSE(kv::text::parse("GET shopping\r\n"));
}

TEST(TextCommand, AnyOtherShapeIsAnUnknownCommand)
{
    for (const char* line : { "", "\r\n", "   \r\n", "\n", "get shopping eggs\r\n", "Create shopping\r\n", "CREATE\r\n",
             "CREATE a b\r\n", "PUT shopping milk\r\n", "PUT shopping milk 1 2\r\n", "DELETE shopping\r\n",
             "GET shopping eggs extra\r\n", "LOOKUP shopping\r\n", "CREATE\xc2\xa0shopping\r\n" })
        EXPECT_FALSE(kv::text::parse(line)) << kv::printable(line);
}

TEST(TextCommand, WordsSplitOnUnicodeWhitespaceButNotOnNoBreakSpaces)
{
    using Words = std::vector<std::string_view>;
    EXPECT_EQ(kv::text::split_words("  PUT\tshopping \x0b milk\f1\r\n"), (Words { "PUT", "shopping", "milk", "1" }));
    // U+0085, U+1680, U+2000, U+2006, U+2008, U+200A, U+2028, U+2029, U+205F, U+3000 divide ...
    EXPECT_EQ(kv::text::split_words("a\xc2\x85" "b\xe1\x9a\x80" "c\xe2\x80\x80" "d\xe2\x80\x86" "e\xe2\x80\x88" "f\xe2\x80\x8a"
                                    "g\xe2\x80\xa8" "h\xe2\x80\xa9" "i\xe2\x81\x9f" "j\xe3\x80\x80" "k"),
        (Words { "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k" }));
    // ... and the no-break ones (U+00A0, U+2007, U+202F) do not; nor do
    // U+200B (not whitespace) or bytes that are not UTF-8.
    EXPECT_EQ(kv::text::split_words("a\xc2\xa0" "b\xe2\x80\x87" "c\xe2\x80\xaf" "d\xe2\x80\x8b" "e\xff\xfe" "f"),
        (Words { "a\xc2\xa0" "b\xe2\x80\x87" "c\xe2\x80\xaf" "d\xe2\x80\x8b" "e\xff\xfe" "f" }));
    // A sequence cut short at the end is part of the word.
    EXPECT_EQ(kv::text::split_words("a \xe2\x80"), (Words { "a", "\xe2\x80" }));
    EXPECT_TRUE(kv::text::split_words("\r\n\t ").empty());
}

TEST(TextCommand, GetRepliesWithTheValueLineThenOk)
{
    EXPECT_EQ(kv::text::get_reply("3"), "3\r\nOK\r\n");
    EXPECT_EQ(kv::text::get_reply(""), "\r\nOK\r\n"); // a missing key, as the guide's nil interpolates
}

// The port a listener got.
int port_of(int fd)
{
    sockaddr_storage bound {};
    socklen_t length = sizeof bound;
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length), 0);
    return bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6&>(bound).sin6_port)
                                       : ntohs(reinterpret_cast<sockaddr_in&>(bound).sin_port);
}

TEST(TextListen, APortAloneBindsLoopbackOnly)
{
    for (const char* address : { "0", ":0" }) {
        auto listener = kv::listen_tcp(address);
        const int port = port_of(listener.fd.get());
        EXPECT_GT(port, 0);
        EXPECT_EQ(listener.address, "127.0.0.1:" + std::to_string(port)) << address;
    }
    auto explicit_any = kv::listen_tcp("0.0.0.0:0");
    EXPECT_EQ(explicit_any.address, "0.0.0.0:" + std::to_string(port_of(explicit_any.fd.get())));
}

TEST(TextListen, IPv6InBrackets)
{
    try {
        auto listener = kv::listen_tcp("[::1]:0");
        EXPECT_EQ(listener.address, "[::1]:" + std::to_string(port_of(listener.fd.get())));
    } catch (const std::runtime_error& error) {
        // A machine without IPv6 on loopback says so in one line.
        EXPECT_EQ(std::string(error.what()).rfind("unable to listen on [::1]:0: ", 0), 0u) << error.what();
    }
}

TEST(TextListen, BadAddressesAndBusyPortsAreOneLineErrors)
{
    for (const char* address : { "", "4040x", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:123456" }) {
        try {
            kv::listen_tcp(address);
            ADD_FAILURE() << "accepted " << address;
        } catch (const std::runtime_error& error) {
            EXPECT_EQ(std::string(error.what()), "unable to listen on " + std::string(address)
                    + ": expected HOST:PORT or PORT, with PORT a number from 0 to 65535");
        }
    }
    try {
        kv::listen_tcp("no.such.host.invalid:0");
        ADD_FAILURE() << "resolved a name that cannot exist";
    } catch (const std::runtime_error& error) {
        EXPECT_EQ(std::string(error.what()).rfind("unable to listen on no.such.host.invalid:0: ", 0), 0u) << error.what();
    }
    auto taken = kv::listen_tcp("0");
    const std::string address = "127.0.0.1:" + std::to_string(port_of(taken.fd.get()));
    try {
        kv::listen_tcp(address);
        ADD_FAILURE() << "bound a port in use";
    } catch (const std::runtime_error& error) {
        EXPECT_EQ(std::string(error.what()), "unable to listen on " + address + ": Address already in use");
    }
}

} // namespace
