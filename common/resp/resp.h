// RESP, the Redis serialization protocol: every kv socket speaks it, so
// redis-cli, redis-benchmark and Redis client libraries work against
// registryd and every bucketd. A connection speaks RESP2 until it sends
// `HELLO 3`, then RESP3 (common/resp/session.h keeps which).
//
// The server side is RequestParser: bytes in, argument vectors out, with hard
// limits so that no client can make a process allocate what it claims. The
// client side is parse_value(), for replies (RESP2 and RESP3). The append_*
// functions write replies; those whose bytes differ between the two protocols
// take the connection's Protocol, as Redis's addReply* functions read c->resp.
// encode_command() writes a request.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kv::resp {

struct Limits {
    std::size_t max_bulk_length = 32 * 1024 * 1024;  // one argument or value
    std::size_t max_array_length = 1024 * 1024;      // arguments in one request
    std::size_t max_inline_length = 64 * 1024;       // inline command or header line
};

using Request = std::vector<std::string>;

// Incremental request parser. Accepts multibulk requests (`*2\r\n$3\r\nGET\r\n...`)
// and inline commands (`GET milk\r\n`, with Redis-style quoting). Keeps its
// position across feeds, so a large bulk string is scanned once, not per read.
class RequestParser {
public:
    enum class Status { need_more, request, protocol_error };

    explicit RequestParser(Limits limits = {}) : limits_(limits) {}

    void feed(const char* data, std::size_t size);

    // On `request`, `out` holds the next request; on `protocol_error`, `error`
    // says why ("Protocol error: invalid bulk length") and the parser is dead:
    // the connection must be answered and closed, as Redis does.
    Status next(Request& out, std::string& error);

    // Bytes received but not yet returned as a request.
    std::size_t buffered() const { return buffer_.size() - position_; }

    // A client that has not yet given the password (a TCP socket's) is held
    // to Redis's limits for one (processMultibulkBuffer): at most 10
    // arguments of at most 16384 bytes each, so one that cannot AUTH cannot
    // make the server hold much for it. Set before each next().
    void set_authenticated(bool authenticated) { authenticated_ = authenticated; }
    static constexpr std::size_t unauthenticated_array_length = 10;
    static constexpr std::size_t unauthenticated_bulk_length = 16384;

private:
    Status fail(std::string& error, std::string_view why);
    Status parse_inline(Request& out, std::string& error);
    enum class HeaderLine { complete, incomplete, too_long };
    // Reads a header line "<prefix><integer>\r\n" into `line` (without the
    // prefix). too_long once it is longer than an inline line may be, whether
    // its CRLF has arrived or not, so the answer does not depend on how the
    // bytes were split into reads.
    HeaderLine read_header_line(std::string_view& line);
    // The common header line, "<prefix><1 to 18 digits>\r\n" all there, in
    // one pass: true with its count, past its CRLF. False, with nothing
    // consumed, for any other line, which read_header_line then reads.
    bool read_short_count(long long& count);
    // A header line's count, either way: complete, with `parsed` saying
    // whether it is an integer (then in `count`), or what read_header_line
    // said of the line.
    HeaderLine read_count(long long& count, bool& parsed);
    void compact();

    Limits limits_;
    bool authenticated_ = true;
    std::string buffer_;
    std::size_t position_ = 0;
    bool in_multibulk_ = false;
    long long multibulk_remaining_ = 0;
    long long bulk_length_ = -1;
    Request arguments_;
    std::size_t argument_count_ = 0;
    bool failed_ = false;
};

// Splits an inline command line into arguments as Redis does (sdssplitargs),
// honouring "double" and 'single' quotes, also inside an argument, and the
// escapes redis-cli uses. False on unbalanced quotes.
bool split_inline(std::string_view line, Request& out);

// A count or number of 1 to 18 plain digits (no sign, leading zeros allowed),
// which cannot overflow: the common case of every integer parse, read without
// from_chars' generality. False, `value` untouched, for any other text.
inline bool parse_plain_digits(std::string_view text, long long& value)
{
    if (text.empty() || text.size() > 18)
        return false;
    long long result = 0;
    for (char c : text) {
        if (c < '0' || c > '9')
            return false;
        result = result * 10 + (c - '0');
    }
    value = result;
    return true;
}

// Redis's strict integer parse (string2ll, util.c), for every argument that
// must be a long long and for a request's count headers (*N, $N), which Redis
// reads with it: digits with an optional '-', no '+', no spaces, no leading
// zeros ("0" itself, not "-0"), at most 20 bytes, no overflow.
inline bool parse_long_long(std::string_view text, long long& value)
{
    if (text.empty() || text.size() > 20 || (text.size() > 1 && text[0] == '0')
        || (text.size() > 1 && text[0] == '-' && text[1] == '0') || text == "-")
        return false;
    // The common case, a counter's value or a count, in fewer instructions
    // than from_chars (which was 120 of a pipelined INCR's 2,465).
    if (text.size() <= 18 && text[0] != '-')
        return resp::parse_plain_digits(text, value);
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    return error == std::errc() && end == text.data() + text.size();
}

// The protocol a connection speaks: RESP2 (every connection starts so) or
// RESP3 (after HELLO 3). The values are HELLO's protover.
enum class Protocol : unsigned char { resp2 = 2, resp3 = 3 };

// The same bytes in both protocols.
void append_simple(std::string& out, std::string_view text);
void append_error(std::string& out, std::string_view text);
void append_integer(std::string& out, long long value);
void append_bulk(std::string& out, std::string_view value);
void append_array_header(std::string& out, std::size_t count);

// Bytes that differ, each as Redis 7.0 writes it (src/networking.c):
// a missing value (addReplyNull: `$-1` / `_`);
void append_null(std::string& out, Protocol protocol);
// a missing array (addReplyNullArray: `*-1` / `_`);
void append_null_array(std::string& out, Protocol protocol);
// a map of `pairs` key/value pairs that follow (`*2N` / `%N`);
void append_map_header(std::string& out, std::size_t pairs, Protocol protocol);
// a set of `count` members that follow (`*N` / `~N`);
void append_set_header(std::string& out, std::size_t count, Protocol protocol);
// text for humans, INFO and CLIENT LIST (a bulk string / `=N\r\ntxt:...`);
void append_verbatim(std::string& out, std::string_view text, Protocol protocol);
// a boolean (`:1`/`:0` / `#t`/`#f`).
void append_boolean(std::string& out, bool value, Protocol protocol);

std::string encode_command(const std::vector<std::string>& arguments);

// A reply as the client sees it.
struct Value {
    // RESP3's aggregate types keep their own type; a map's elements are its
    // keys and values in turn, so field() reads a RESP2 pair array and a
    // RESP3 map alike. A verbatim string's text excludes its "txt:" format.
    enum class Type { simple, error, integer, bulk, null, array, map, set, verbatim, boolean, double_number, big_number };
    Type type = Type::null;
    std::string text;      // simple, error, bulk, verbatim, double_number, big_number
    long long integer = 0; // integer, boolean (1 or 0)
    std::vector<Value> elements;

    bool is_error() const { return type == Type::error; }
    // For a flat field/value array or a map (LOOKUP, LIST entries): the value after `field`.
    const Value* field(std::string_view field) const;
    // The bulk string `field` holds, into `out`; false if it is absent or not one.
    bool text_field(std::string_view field, std::string& out) const;
    // The integer `field` holds, into `out`; false if it is absent or not one.
    template <typename Number>
    bool integer_field(std::string_view field, Number& out) const
    {
        const Value* value = this->field(field);
        if (!value || value->type != Type::integer)
            return false;
        out = static_cast<Number>(value->integer);
        return true;
    }
};

enum class ParseResult { complete, incomplete, invalid };

// Parses one reply from the front of `buffer`; on `complete`, `consumed` is its size.
ParseResult parse_value(std::string_view buffer, std::size_t& consumed, Value& out,
    const Limits& limits = {});

} // namespace kv::resp
