#include "etcd_client.h"

#include <boost/beast/core.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/http.hpp>

#include "log.h"

namespace kv {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

std::vector<EtcdEndpoint> parse_etcd_endpoints(std::string_view text, std::string& error)
{
    std::vector<EtcdEndpoint> endpoints;
    while (!text.empty()) {
        const auto comma = text.find(',');
        std::string_view url = text.substr(0, comma);
        text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
        constexpr std::string_view scheme = "http://";
        if (url.substr(0, scheme.size()) != scheme) {
            error = "not an http:// URL: " + std::string(url);
            return {};
        }
        url.remove_prefix(scheme.size());
        if (!url.empty() && url.back() == '/')
            url.remove_suffix(1);
        const auto colon = url.rfind(':');
        if (colon == std::string_view::npos || colon == 0 || colon + 1 == url.size()
            || url.substr(colon + 1).find_first_not_of("0123456789") != std::string_view::npos) {
            error = "not http://HOST:PORT: " + std::string(scheme) + std::string(url);
            return {};
        }
        std::string host(url.substr(0, colon));
        if (host.size() > 2 && host.front() == '[' && host.back() == ']')
            host = host.substr(1, host.size() - 2); // [::1]
        endpoints.push_back(EtcdEndpoint { host, std::string(url.substr(colon + 1)) });
    }
    if (endpoints.empty())
        error = "no etcd endpoint given";
    return endpoints;
}

std::string base64_encode(std::string_view bytes)
{
    std::string out(beast::detail::base64::encoded_size(bytes.size()), '\0');
    out.resize(beast::detail::base64::encode(out.data(), bytes.data(), bytes.size()));
    return out;
}

bool base64_decode(std::string_view text, std::string& bytes)
{
    bytes.assign(beast::detail::base64::decoded_size(text.size()), '\0');
    const auto [written, read] = beast::detail::base64::decode(bytes.data(), text.data(), text.size());
    // Beast's decoder stops at the padding: what it left must be only that.
    if (text.substr(read).find_first_not_of('=') != std::string_view::npos || text.size() - read > 2) {
        bytes.clear();
        return false;
    }
    bytes.resize(written);
    return true;
}

long long json_int64(const Json& object, const char* field)
{
    if (!object.is_object())
        return 0;
    const auto it = object.find(field);
    if (it == object.end())
        return 0;
    if (it->is_number_integer())
        return it->get<long long>();
    if (it->is_string()) {
        try {
            return std::stoll(it->get<std::string>());
        } catch (const std::exception&) {
            return 0;
        }
    }
    return 0;
}

bool json_bool(const Json& object, const char* field)
{
    if (!object.is_object())
        return false;
    const auto it = object.find(field);
    return it != object.end() && it->is_boolean() && it->get<bool>();
}

std::string json_bytes(const Json& object, const char* field)
{
    std::string bytes;
    if (!object.is_object())
        return bytes;
    const auto it = object.find(field);
    if (it != object.end() && it->is_string())
        base64_decode(it->get_ref<const std::string&>(), bytes);
    return bytes;
}

namespace {

// The gateway's stream framing: one JSON object per line. Unwraps {"result": R}
// to R; {"error": E} becomes `error`.
bool unwrap_stream_line(std::string_view line, Json& result, std::string& error)
{
    Json message = Json::parse(line, nullptr, false);
    if (message.is_discarded() || !message.is_object()) {
        error = "etcd sent a line that is not a JSON object";
        return false;
    }
    if (auto it = message.find("result"); it != message.end()) {
        result = std::move(*it);
        return true;
    }
    if (auto it = message.find("error"); it != message.end()) {
        error = "etcd: " + (it->is_object() && it->contains("message") && (*it)["message"].is_string()
                                   ? (*it)["message"].get<std::string>()
                                   : it->dump());
        return false;
    }
    result = std::move(message);
    return true;
}

} // namespace

// One HTTP exchange: resolve, connect (to the next endpoint if one fails),
// write, read. A unary call reads the whole response; a watch reads its
// chunked body for as long as it lasts.
struct EtcdClient::Exchange : std::enable_shared_from_this<EtcdClient::Exchange> {
    EtcdClient* client;
    std::shared_ptr<bool> alive;
    beast::tcp_stream stream;
    http::request<http::string_body> request;
    beast::flat_buffer buffer;
    std::size_t attempts = 0;
    std::size_t endpoint = 0;
    std::string last_connect_error;
    bool finished = false;

    // Unary
    Handler handler;
    std::optional<http::response_parser<http::string_body>> response;
    // Watch
    bool streaming = false;
    std::optional<http::response_parser<http::empty_body>> stream_parser;
    std::function<std::size_t(std::uint64_t, boost::string_view, beast::error_code&)> chunk_body;
    std::string pending; // bytes of the current line
    std::function<void(const Json&)> on_result;
    std::function<void(const std::string&)> on_end;

    Exchange(EtcdClient& owner, const std::string& path, const Json& body)
        : client(&owner)
        , alive(owner.alive_)
        , stream(owner.io_)
    {
        request.method(http::verb::post);
        request.target(path);
        request.version(11);
        request.set(http::field::content_type, "application/json");
        request.set(http::field::connection, "close");
        request.body() = body.dump();
        request.prepare_payload(); // Content-Length
        endpoint = owner.preferred_;
    }

    const EtcdEndpoint& current() const { return client->endpoints_[endpoint % client->endpoints_.size()]; }

    std::string where() const { return "etcd " + current().url() + request.target().to_string(); }

    void start()
    {
        if (!*alive)
            return;
        if (attempts == client->endpoints_.size()) {
            fail(std::string("unable to reach etcd (") + last_connect_error + ")");
            return;
        }
        ++attempts;
        request.set(http::field::host, current().host + ":" + current().port);
        stream.expires_after(client->timeout_);
        const auto& addresses = client->addresses_[endpoint % client->endpoints_.size()];
        if (addresses.empty())
            return next_endpoint(asio::error::host_not_found);
        stream.async_connect(addresses, [self = shared_from_this()](const beast::error_code& error, const tcp::endpoint&) {
            if (!*self->alive)
                return;
            if (error)
                return self->next_endpoint(error);
            self->write();
        });
    }

    void next_endpoint(const beast::error_code& error)
    {
        pass_over();
        last_connect_error = current().url() + ": " + (error == beast::error::timeout ? std::string("timed out") : error.message());
        stream.close();
        ++endpoint;
        start();
    }

    void write()
    {
        if (streaming)
            stream.expires_never(); // a watch waits for events as long as they take
        else
            stream.expires_after(client->timeout_);
        http::async_write(stream, request, [self = shared_from_this()](const beast::error_code& error, std::size_t) {
            if (!*self->alive)
                return;
            if (error)
                return self->fail("unable to send to " + self->where() + ": " + error.message());
            if (self->streaming)
                self->read_stream_header();
            else
                self->read_response();
        });
    }

    void read_response()
    {
        response.emplace();
        response->body_limit(64 << 20);
        http::async_read(stream, buffer, *response, [self = shared_from_this()](const beast::error_code& error, std::size_t) {
            if (!*self->alive)
                return;
            if (error)
                return self->fail("no reply from " + self->where() + ": "
                    + (error == beast::error::timeout ? std::string("timed out") : error.message()));
            auto& message = self->response->get();
            const std::string& body = message.body();
            if (message.result() != http::status::ok) {
                Json parsed = Json::parse(body, nullptr, false);
                std::string why = parsed.is_object() && parsed.contains("message") && parsed["message"].is_string()
                    ? parsed["message"].get<std::string>()
                    : body.substr(0, 200);
                return self->fail(self->where() + " answered " + std::to_string(message.result_int()) + ": " + printable(why));
            }
            Json reply;
            std::string why;
            // A streaming call used once (keepalive) answers with its first line.
            const bool chunked = message.chunked();
            if (chunked ? !unwrap_stream_line(std::string_view(body).substr(0, body.find('\n')), reply, why)
                        : (reply = Json::parse(body, nullptr, false)).is_discarded()) {
                return self->fail(self->where() + ": " + (why.empty() ? "reply is not JSON" : why));
            }
            self->finish({}, reply);
        });
    }

    void read_stream_header()
    {
        stream_parser.emplace();
        stream_parser->body_limit(boost::none);
        // The parser keeps a reference to the callback: it lives here, as long as the parser.
        chunk_body = [this](std::uint64_t, boost::string_view data, beast::error_code&) -> std::size_t {
            on_stream_bytes(std::string_view(data.data(), data.size()));
            return data.size();
        };
        stream_parser->on_chunk_body(chunk_body);
        http::async_read_header(stream, buffer, *stream_parser, [self = shared_from_this()](const beast::error_code& error, std::size_t) {
            if (!*self->alive || self->finished)
                return;
            if (error)
                return self->fail("watch on " + self->where() + " ended: " + error.message());
            if (self->stream_parser->get().result() != http::status::ok)
                return self->fail("watch on " + self->where() + " answered " + std::to_string(self->stream_parser->get().result_int()));
            self->read_stream_body();
        });
    }

    void read_stream_body()
    {
        http::async_read(stream, buffer, *stream_parser, [self = shared_from_this()](const beast::error_code& error, std::size_t) {
            if (!*self->alive || self->finished)
                return;
            self->fail("watch on " + self->where() + " ended: " + (error ? error.message() : std::string("etcd closed it")));
        });
    }

    void on_stream_bytes(std::string_view data)
    {
        if (finished || !*alive)
            return;
        pending.append(data);
        std::size_t newline;
        while (!finished && (newline = pending.find('\n')) != std::string::npos) {
            const std::string line = pending.substr(0, newline);
            pending.erase(0, newline + 1);
            if (line.find_first_not_of(" \r\t") == std::string::npos)
                continue;
            Json result;
            std::string why;
            if (!unwrap_stream_line(line, result, why))
                return fail("watch on " + where() + ": " + printable(why));
            if (!deliver([&] { on_result(result); }))
                return;
        }
        // A line etcd never ends is not kept for ever.
        if (pending.size() > max_line)
            fail("watch on " + where() + ": a line longer than " + std::to_string(max_line) + " bytes");
    }

    static constexpr std::size_t max_line = 8 << 20;

    // Runs a callback of the client's owner: whatever etcd sent that the
    // owner could not make sense of (a JSON value of another type than it
    // expects, which nlohmann reports by throwing) fails this exchange, never
    // the process.
    template <class Callback>
    bool deliver(Callback callback)
    {
        try {
            callback();
            return true;
        } catch (const std::exception& error) {
            if (!streaming)
                return false;
            on_result = nullptr;
            if (auto end = std::move(on_end)) {
                finished = true;
                stream.close();
                end("watch on " + where() + ": unexpected reply: " + printable(error.what()));
            }
            return false;
        }
    }

    // Any failure passes this endpoint over: the next call tries the next
    // one first (a member that accepts connections but cannot answer, with
    // no leader or cut off from the others, is left too).
    void pass_over()
    {
        const std::size_t count = client->endpoints_.size();
        if (client->preferred_ == endpoint % count)
            client->preferred_ = (endpoint + 1) % count;
    }

    void fail(const std::string& why)
    {
        if (std::exchange(finished, true))
            return;
        pass_over();
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        stream.close();
        if (streaming) {
            if (auto end = std::move(on_end))
                end(why);
        } else if (auto done = std::move(handler)) {
            deliver([&] { done(why, Json()); });
        }
    }

    void finish(const std::string& why, const Json& reply)
    {
        if (std::exchange(finished, true))
            return;
        // This endpoint answered: later calls try it first.
        client->preferred_ = endpoint % client->endpoints_.size();
        stream.close();
        if (auto done = std::move(handler)) {
            if (!deliver([&] { done(why, reply); })) {
                // The owner threw on what etcd said: it hears of it as a failure.
                Handler again = std::move(done);
                deliver([&] { again(where() + ": unexpected reply: " + reply.dump().substr(0, 200), Json()); });
            }
        }
    }
};

class EtcdClient::Watch {
public:
    std::weak_ptr<Exchange> exchange;
};

EtcdClient::EtcdClient(asio::io_context& io, std::vector<EtcdEndpoint> endpoints, std::chrono::milliseconds timeout)
    : io_(io)
    , endpoints_(std::move(endpoints))
    , timeout_(timeout)
    , alive_(std::make_shared<bool>(true))
{
    // Resolved once, here, blocking: the loop runs with Asio's
    // single-threaded hint, under which async_resolve (a thread of Asio's
    // own) is not supported. A name that does not resolve now is passed
    // over like an endpoint that refuses.
    tcp::resolver resolver(io);
    for (const auto& endpoint : endpoints_) {
        boost::system::error_code error;
        auto results = resolver.resolve(endpoint.host, endpoint.port, error);
        std::vector<tcp::endpoint> addresses;
        if (!error)
            for (const auto& result : results)
                addresses.push_back(result.endpoint());
        addresses_.push_back(std::move(addresses));
    }
}

EtcdClient::~EtcdClient() { *alive_ = false; }

void EtcdClient::call(const std::string& path, const Json& body, Handler handler)
{
    auto exchange = std::make_shared<Exchange>(*this, path, body);
    exchange->handler = std::move(handler);
    exchange->start();
}

std::shared_ptr<EtcdClient::Watch> EtcdClient::watch(const Json& create_request, std::function<void(const Json&)> on_result,
    std::function<void(const std::string&)> on_end)
{
    auto exchange = std::make_shared<Exchange>(*this, "/v3/watch", Json { { "create_request", create_request } });
    exchange->streaming = true;
    exchange->on_result = std::move(on_result);
    exchange->on_end = std::move(on_end);
    exchange->start();
    auto watch = std::make_shared<Watch>();
    watch->exchange = exchange;
    return watch;
}

void EtcdClient::cancel(const std::shared_ptr<Watch>& watch)
{
    if (!watch)
        return;
    if (auto exchange = watch->exchange.lock()) {
        exchange->on_end = nullptr;
        exchange->on_result = nullptr;
        exchange->fail("cancelled");
    }
}

} // namespace kv
