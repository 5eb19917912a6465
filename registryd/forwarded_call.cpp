#include "forwarded_call.h"

#include <array>
#include <memory>

#include "tcp_listener.h"

namespace kv {

namespace {

// A registry's reply is one bucket record or one error line: far below
// this. More is not a registry talking, and is not buffered.
constexpr std::size_t max_reply_bytes = 1 << 20;

class Call : public std::enable_shared_from_this<Call> {
public:
    Call(asio::io_context& io, ForwardedCall call, std::function<void(std::optional<resp::Value>, const std::string&)> done)
        : socket_(io)
        , timer_(io)
        , call_(std::move(call))
        , done_(std::move(done))
    {
    }

    void start()
    {
        // The address is the one the node bound and registered: numeric,
        // so no resolver is needed (nor wanted on this loop).
        boost::system::error_code error;
        std::string host = address_host(call_.address);
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
            host = host.substr(1, host.size() - 2);
        const asio::ip::address ip = asio::ip::make_address(host, error);
        const unsigned port = address_port(call_.address);
        if (error || port == 0 || port > 65535) {
            finish(std::nullopt, "its address " + call_.address + " is not an IP address and port");
            return;
        }
        timer_.expires_after(call_.timeout);
        timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
            if (!error)
                self->finish(std::nullopt, "timed out after " + std::to_string(self->call_.timeout.count()) + " ms");
        });
        outgoing_ = resp::encode_command({ "AUTH", call_.password }) + resp::encode_command(call_.request);
        socket_.async_connect({ ip, static_cast<unsigned short>(port) }, [self = shared_from_this()](const boost::system::error_code& error) {
            if (error) {
                self->finish(std::nullopt, error.message());
                return;
            }
            asio::async_write(self->socket_, asio::buffer(self->outgoing_), [self](const boost::system::error_code& error, std::size_t) {
                if (error)
                    self->finish(std::nullopt, error.message());
            });
            self->read();
        });
    }

private:
    void read()
    {
        socket_.async_read_some(asio::buffer(chunk_), [self = shared_from_this()](const boost::system::error_code& error, std::size_t size) {
            if (error) {
                self->finish(std::nullopt, error == asio::error::eof ? "it closed the connection before replying" : error.message());
                return;
            }
            self->incoming_.append(self->chunk_.data(), size);
            self->parse();
        });
    }

    void parse()
    {
        for (;;) {
            std::size_t consumed = 0;
            resp::Value value;
            switch (resp::parse_value(incoming_, consumed, value)) {
            case resp::ParseResult::invalid: finish(std::nullopt, "its reply is not RESP"); return;
            case resp::ParseResult::incomplete:
                if (incoming_.size() > max_reply_bytes) {
                    finish(std::nullopt, "its reply is longer than " + std::to_string(max_reply_bytes) + " bytes");
                    return;
                }
                read();
                return;
            case resp::ParseResult::complete: break;
            }
            incoming_.erase(0, consumed);
            if (!authenticated_) {
                if (value.is_error()) {
                    // WRONGPASS (a password not the cluster's), or anything
                    // else the node said first (ERR max connections reached).
                    const bool password = value.text.rfind("WRONGPASS", 0) == 0 || value.text.find("AUTH") != std::string::npos;
                    finish(std::nullopt, (password ? "it refused the password: " : "it answered AUTH with: ") + value.text);
                    return;
                }
                authenticated_ = true;
                continue;
            }
            finish(std::move(value), {});
            return;
        }
    }

    void finish(std::optional<resp::Value> reply, const std::string& error)
    {
        if (finished_)
            return;
        finished_ = true;
        timer_.cancel();
        boost::system::error_code ignored;
        socket_.close(ignored); // the handlers still pending end with operation_aborted, and find us finished
        auto done = std::move(done_);
        done(std::move(reply), error);
    }

    asio::ip::tcp::socket socket_;
    asio::steady_timer timer_;
    ForwardedCall call_;
    std::function<void(std::optional<resp::Value>, const std::string&)> done_;
    std::string outgoing_;
    std::string incoming_;
    std::array<char, 4096> chunk_ {};
    bool authenticated_ = false;
    bool finished_ = false;
};

} // namespace

void forward_call(asio::io_context& io, ForwardedCall call, std::function<void(std::optional<resp::Value> reply, const std::string& error)> done)
{
    std::make_shared<Call>(io, std::move(call), std::move(done))->start();
}

} // namespace kv
