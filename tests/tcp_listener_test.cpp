// What registryd tells others of its TCP addresses (tcp_listener.h): a bound
// address on every address of the machine is recognised as such, and
// --advertise-address takes an IP address, never a wildcard, shown as kv
// shows addresses.
#include <gtest/gtest.h>

#include "tcp_listener.h"

TEST(TcpListener, AnAddressOnEveryAddressOfTheMachineIsRecognised)
{
    EXPECT_TRUE(kv::binds_every_address("0.0.0.0:6380"));
    EXPECT_TRUE(kv::binds_every_address("[::]:6380"));
    EXPECT_FALSE(kv::binds_every_address("127.0.0.1:6380"));
    EXPECT_FALSE(kv::binds_every_address("[::1]:6380"));
    EXPECT_FALSE(kv::binds_every_address("192.0.2.7:0"));
    // As listen_tcp gives it for "0.0.0.0:0".
    EXPECT_TRUE(kv::binds_every_address(kv::listen_tcp("0.0.0.0:0").address));
}

TEST(TcpListener, AnAdvertisedHostIsAnIpAddressShownAsInAddresses)
{
    std::string why;
    EXPECT_EQ(kv::advertised_host("192.0.2.7", why), "192.0.2.7");
    EXPECT_EQ(kv::advertised_host("2001:db8::7", why), "[2001:db8::7]");
    EXPECT_EQ(kv::advertised_host("[2001:DB8:0::7]", why), "[2001:db8::7]");
    EXPECT_EQ(why, "");
    EXPECT_EQ(kv::with_host("192.0.2.7", "0.0.0.0:40919"), "192.0.2.7:40919");
    EXPECT_EQ(kv::with_host("[2001:db8::7]", "[::]:40919"), "[2001:db8::7]:40919");
}

TEST(TcpListener, AWildcardOrANameIsNoAdvertisedHost)
{
    std::string why;
    EXPECT_EQ(kv::advertised_host("0.0.0.0", why), "");
    EXPECT_EQ(why, "0.0.0.0 is every address of this machine, which no other can connect to");
    EXPECT_EQ(kv::advertised_host("[::]", why), "");
    EXPECT_EQ(why, "[::] is every address of this machine, which no other can connect to");
    EXPECT_EQ(kv::advertised_host("node-a.example", why), "");
    EXPECT_EQ(why, "not an IPv4 or IPv6 address: node-a.example");
    EXPECT_EQ(kv::advertised_host("192.0.2.7:6380", why), "");
}
