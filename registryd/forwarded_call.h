// One call that registryd makes to another node's registry over TCP, on its
// own event loop: how `--placement hash` hands a CREATE to the node the
// name is placed on (the guide's KV.Router: the request is served there and
// answered here).
//
// The other node is a registryd of the same cluster, reached at the address
// it registered (<prefix>nodes/<node>), with the cluster's one password
// (--password-file: every node of a cluster has the same). The call is
// AUTH, then the request, pipelined on one new connection, which is closed
// after the reply. Nothing here blocks: it is a chain of Asio handlers with
// one deadline over all of them.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "asio.h"
#include "resp.h"

namespace kv {

struct ForwardedCall {
    std::string address;  // the node's registry, as registered: "127.0.0.1:7001", "[::1]:7001"
    std::string password; // AUTH's
    std::vector<std::string> request;
    std::chrono::milliseconds timeout { 7000 }; // the whole call: connect, AUTH, the request's reply
};

// Makes `call`; `done` runs once, on the loop, with the request's reply (an
// error reply too: the other node's answer), or with none and why: the node
// could not be reached, refused the password, hung up or did not answer in
// time ("connection refused", "timed out after 7000 ms").
void forward_call(asio::io_context& io, ForwardedCall call,
    std::function<void(std::optional<resp::Value> reply, const std::string& error)> done);

} // namespace kv
