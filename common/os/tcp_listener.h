// Binding a TCP port, in one place for every TCP listener registryd makes:
// the text server's (--text-listen), the registry's own (--listen-tcp) and
// each bucket's beside it.
#pragma once

#include <string>

#include "unique_fd.h"

namespace kv {

// A listening TCP socket on `address`: "HOST:PORT", "[IPv6]:PORT", ":PORT" or
// "PORT" (HOST 127.0.0.1 then; PORT 0 picks a free one). Close-on-exec,
// SO_REUSEADDR. Throws std::runtime_error with one line ("unable to listen on
// 127.0.0.1:4040: Address already in use").
struct TcpListener {
    UniqueFd fd;
    std::string address; // as bound: "127.0.0.1:4040", "[::1]:4040"
};
TcpListener listen_tcp(const std::string& address);

// The host part of a bound address ("127.0.0.1", "[::1]"), and its port.
std::string address_host(const std::string& address);
unsigned address_port(const std::string& address);

// Whether a bound address ("0.0.0.0:6380", "[::]:6380") listens on every
// address of the machine: no client elsewhere can connect to it by that name,
// so it must not be what other nodes are told (--advertise-address).
bool binds_every_address(const std::string& address);
// `host`, an IP address ("192.0.2.7", "2001:db8::7" or "[2001:db8::7]"), as
// kv shows it in an address ("192.0.2.7", "[2001:db8::7]"); empty, with
// `why` set, if it is no IP address or is a wildcard (0.0.0.0, ::).
std::string advertised_host(const std::string& host, std::string& why);
// `address`'s port on another host: with_host("192.0.2.7", "0.0.0.0:40919")
// is "192.0.2.7:40919". `host` as advertised_host() gives it.
std::string with_host(const std::string& host, const std::string& address);

} // namespace kv
