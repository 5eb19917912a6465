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

} // namespace kv
