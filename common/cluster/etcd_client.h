// EtcdClient: etcd v3 spoken through its JSON gateway (HTTP/1.1 POSTs of
// JSON to /v3/...), from an Asio loop, never blocking it. This is all kv
// knows of etcd's wire: cluster.h says what kv keeps there.
//
// Facts of the gateway (etcd 3.4, checked against Debian's etcd-server):
// - keys and values are base64 in the JSON; int64 fields are JSON strings;
// - proto3 JSON leaves out false, zero and empty fields: a failed txn has no
//   "succeeded", an expired lease's keepalive reply has no "TTL", a range
//   that found nothing has no "kvs" (read a missing field as false, 0, none);
// - a streaming call (watch, keepalive) answers with a chunked body of JSON
//   objects, one per line, each {"result": ...} or {"error": ...}.
//
// Every call goes on a connection of its own (loopback or LAN: a connect
// costs little beside etcd's own write), to the first endpoint that accepts
// it: an endpoint that refuses or times out is passed over for the next,
// which is how a client survives a dead member.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "asio.h"

namespace kv {

using Json = nlohmann::json;

// "http://HOST:PORT", as etcd's --advertise-client-urls gives them.
struct EtcdEndpoint {
    std::string host;
    std::string port;
    std::string url() const { return "http://" + host + ":" + port; }
};

// "http://h1:p1,http://h2:p2": every endpoint, or why the text is not that.
// Only http: the gateway on a trusted network or loopback (README "Cluster").
std::vector<EtcdEndpoint> parse_etcd_endpoints(std::string_view text, std::string& error);

std::string base64_encode(std::string_view bytes);
// Empty and false if `text` is not base64.
bool base64_decode(std::string_view text, std::string& bytes);

// A field proto3 may have left out, as the type it stands for.
long long json_int64(const Json& object, const char* field);  // "123" or 123; 0 if absent
bool json_bool(const Json& object, const char* field);         // false if absent
std::string json_bytes(const Json& object, const char* field); // base64-decoded; "" if absent

class EtcdClient {
public:
    // `timeout` bounds every unary call, connect to reply.
    EtcdClient(asio::io_context& io, std::vector<EtcdEndpoint> endpoints, std::chrono::milliseconds timeout);
    ~EtcdClient();
    EtcdClient(const EtcdClient&) = delete;
    EtcdClient& operator=(const EtcdClient&) = delete;

    // `error` is empty on success, else one line: what failed, on which
    // endpoint, why. For a streaming call's unary use (keepalive), `reply`
    // is its first result.
    using Handler = std::function<void(const std::string& error, const Json& reply)>;
    void call(const std::string& path, const Json& body, Handler handler);

    // A watch stream (POST /v3/watch with `create_request`): `on_result` for
    // every result (the "created" one first), `on_end` once if the stream
    // ends for any reason (etcd gone, cancelled, compacted); not after
    // cancel() or the client's destruction.
    class Watch;
    std::shared_ptr<Watch> watch(const Json& create_request, std::function<void(const Json& result)> on_result,
        std::function<void(const std::string& why)> on_end);
    static void cancel(const std::shared_ptr<Watch>& watch);

    const std::vector<EtcdEndpoint>& endpoints() const { return endpoints_; }

private:
    struct Exchange;
    asio::io_context& io_;
    std::vector<EtcdEndpoint> endpoints_;
    std::vector<std::vector<asio::ip::tcp::endpoint>> addresses_; // each endpoint's, resolved at construction
    std::chrono::milliseconds timeout_;
    std::size_t preferred_ = 0; // the endpoint that answered last: tried first
    std::shared_ptr<bool> alive_; // false once destroyed: late completions do nothing
    friend struct Exchange;
};

} // namespace kv
