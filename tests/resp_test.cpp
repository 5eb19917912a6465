#include "resp.h"

#include <gtest/gtest.h>

using kv::resp::Request;
using kv::resp::RequestParser;
using Status = RequestParser::Status;

namespace {

std::vector<Request> parse_all(RequestParser& parser, Status* last = nullptr)
{
    std::vector<Request> requests;
    for (;;) {
        Request request;
        std::string error;
        auto status = parser.next(request, error);
        if (status != Status::request) {
            if (last)
                *last = status;
            return requests;
        }
        requests.push_back(request);
    }
}

} // namespace

TEST(RequestParser, ParsesMultibulkRequest)
{
    RequestParser parser;
    std::string bytes = "*3\r\n$3\r\nSET\r\n$4\r\nmilk\r\n$1\r\n1\r\n";
    parser.feed(bytes.data(), bytes.size());
    auto requests = parse_all(parser);
    ASSERT_EQ(requests.size(), 1u);
    EXPECT_EQ(requests[0], (Request { "SET", "milk", "1" }));
    EXPECT_EQ(parser.buffered(), 0u);
}

TEST(RequestParser, ParsesRequestSplitAcrossEveryByte)
{
    RequestParser parser;
    std::string bytes = kv::resp::encode_command({ "SET", std::string("a\0b\r\n", 5), "value" });
    std::vector<Request> requests;
    for (char c : bytes) {
        parser.feed(&c, 1);
        auto more = parse_all(parser);
        requests.insert(requests.end(), more.begin(), more.end());
    }
    ASSERT_EQ(requests.size(), 1u);
    EXPECT_EQ(requests[0][1], std::string("a\0b\r\n", 5));
}

TEST(RequestParser, ParsesPipelinedRequestsInOneFeed)
{
    RequestParser parser;
    std::string bytes;
    for (int i = 0; i < 100; ++i)
        bytes += kv::resp::encode_command({ "GET", "key" + std::to_string(i) });
    bytes += "PING\r\n";
    parser.feed(bytes.data(), bytes.size());
    auto requests = parse_all(parser);
    ASSERT_EQ(requests.size(), 101u);
    EXPECT_EQ(requests[99][1], "key99");
    EXPECT_EQ(requests[100], (Request { "PING" }));
}

TEST(RequestParser, ParsesInlineCommandsWithQuotes)
{
    RequestParser parser;
    std::string bytes = "SET \"two words\" 'it''s'\r\nset k \"a\\x41\\n\"\n\r\n";
    parser.feed(bytes.data(), bytes.size());
    Status last;
    auto requests = parse_all(parser, &last);
    EXPECT_EQ(last, Status::protocol_error); // 'it''s' is unbalanced in Redis's grammar
    RequestParser second;
    bytes = "SET \"two words\" x\r\nset k \"a\\x41\\n\"\n\r\n";
    second.feed(bytes.data(), bytes.size());
    requests = parse_all(second);
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_EQ(requests[0], (Request { "SET", "two words", "x" }));
    EXPECT_EQ(requests[1], (Request { "set", "k", "aA\n" }));
}

TEST(RequestParser, RefusesBulkLongerThanLimitWithoutAllocatingIt)
{
    RequestParser parser;
    std::string bytes = "*2\r\n$3\r\nGET\r\n$100000000000\r\n";
    parser.feed(bytes.data(), bytes.size());
    Request request;
    std::string error;
    EXPECT_EQ(parser.next(request, error), Status::protocol_error);
    EXPECT_EQ(error, "Protocol error: invalid bulk length");
}

// Redis's limits for a client that has not given the password yet, exactly
// at them and one past; lifted once it has.
TEST(RequestParser, HoldsAnUnauthenticatedClientToTenArgumentsOf16KiB)
{
    auto parse = [](bool authenticated, const std::string& bytes, std::string& error) {
        RequestParser parser;
        parser.set_authenticated(authenticated);
        parser.feed(bytes.data(), bytes.size());
        Request request;
        return parser.next(request, error);
    };
    auto many = [](std::size_t count) {
        std::string bytes = "*" + std::to_string(count) + "\r\n";
        for (std::size_t i = 0; i < count; ++i)
            bytes += "$1\r\nx\r\n";
        return bytes;
    };
    const std::string big = "*2\r\n$3\r\nGET\r\n$16384\r\n" + std::string(16384, 'k') + "\r\n";
    const std::string bigger = "*2\r\n$3\r\nGET\r\n$16385\r\n" + std::string(16385, 'k') + "\r\n";
    std::string error;
    EXPECT_EQ(parse(false, many(10), error), Status::request);
    EXPECT_EQ(parse(false, big, error), Status::request);
    EXPECT_EQ(parse(false, many(11), error), Status::protocol_error);
    EXPECT_EQ(error, "Protocol error: unauthenticated multibulk length");
    EXPECT_EQ(parse(false, bigger, error), Status::protocol_error);
    EXPECT_EQ(error, "Protocol error: unauthenticated bulk length");
    EXPECT_EQ(parse(true, many(11), error), Status::request);
    EXPECT_EQ(parse(true, bigger, error), Status::request);
    // Redis's order: a count past INT_MAX is invalid before it is too many
    // for a client that has not authenticated.
    EXPECT_EQ(parse(false, "*3000000000\r\n", error), Status::protocol_error);
    EXPECT_EQ(error, "Protocol error: invalid multibulk length");
    EXPECT_EQ(parse(false, "*2147483647\r\n", error), Status::protocol_error);
    EXPECT_EQ(error, "Protocol error: unauthenticated multibulk length");
}

TEST(RequestParser, RefusesArrayLongerThanLimit)
{
    kv::resp::Limits limits;
    limits.max_array_length = 10;
    RequestParser parser(limits);
    std::string bytes = "*11\r\n";
    parser.feed(bytes.data(), bytes.size());
    Request request;
    std::string error;
    EXPECT_EQ(parser.next(request, error), Status::protocol_error);
}

TEST(RequestParser, RefusesEndlessInlineLine)
{
    kv::resp::Limits limits;
    limits.max_inline_length = 100;
    RequestParser parser(limits);
    std::string bytes(200, 'x');
    parser.feed(bytes.data(), bytes.size());
    Request request;
    std::string error;
    EXPECT_EQ(parser.next(request, error), Status::protocol_error);
}

TEST(RequestParser, RefusesBulkWithoutDollar)
{
    RequestParser parser;
    std::string bytes = "*1\r\n:3\r\n";
    parser.feed(bytes.data(), bytes.size());
    Request request;
    std::string error;
    EXPECT_EQ(parser.next(request, error), Status::protocol_error);
    EXPECT_NE(error.find("expected '$'"), std::string::npos);
}

TEST(RequestParser, SkipsEmptyLinesAndEmptyArrays)
{
    RequestParser parser;
    std::string bytes = "\r\n*0\r\n\nPING\r\n";
    parser.feed(bytes.data(), bytes.size());
    auto requests = parse_all(parser);
    ASSERT_EQ(requests.size(), 1u);
    EXPECT_EQ(requests[0], (Request { "PING" }));
}

TEST(ParseValue, ParsesNestedReply)
{
    std::string bytes = "*3\r\n:42\r\n$-1\r\n*2\r\n+OK\r\n-ERR no\r\n";
    kv::resp::Value value;
    std::size_t consumed = 0;
    ASSERT_EQ(kv::resp::parse_value(bytes, consumed, value), kv::resp::ParseResult::complete);
    EXPECT_EQ(consumed, bytes.size());
    ASSERT_EQ(value.elements.size(), 3u);
    EXPECT_EQ(value.elements[0].integer, 42);
    EXPECT_EQ(value.elements[1].type, kv::resp::Value::Type::null);
    EXPECT_TRUE(value.elements[2].elements[1].is_error());
    EXPECT_EQ(value.elements[2].elements[1].text, "ERR no");
}

TEST(ParseValue, ReportsIncompleteUntilTheLastByte)
{
    std::string bytes;
    kv::resp::append_bulk(bytes, "hello");
    for (std::size_t size = 0; size < bytes.size(); ++size) {
        kv::resp::Value value;
        std::size_t consumed = 0;
        EXPECT_EQ(kv::resp::parse_value(std::string_view(bytes).substr(0, size), consumed, value),
            kv::resp::ParseResult::incomplete);
    }
}

TEST(AppendError, KeepsErrorOnOneLine)
{
    std::string out;
    kv::resp::append_error(out, "ERR bad\r\nname");
    EXPECT_EQ(out, "-ERR bad  name\r\n");
}

// Every limit at exactly the limit (accepted) and at one past it (refused),
// fed in one piece and byte by byte: the answer must not depend on the reads.
namespace {

struct Parsed {
    std::vector<Request> requests;
    Status last = Status::need_more;
    std::string error;
    std::size_t buffered = 0;
};

Parsed parse_in_pieces(const kv::resp::Limits& limits, std::string_view bytes, std::size_t chunk)
{
    RequestParser parser(limits);
    Parsed parsed;
    for (std::size_t offset = 0; offset < bytes.size() && parsed.last != Status::protocol_error; offset += chunk) {
        auto piece = bytes.substr(offset, chunk);
        parser.feed(piece.data(), piece.size());
        for (;;) {
            Request request;
            parsed.last = parser.next(request, parsed.error);
            if (parsed.last != Status::request)
                break;
            parsed.requests.push_back(request);
        }
    }
    parsed.buffered = parser.buffered();
    return parsed;
}

// Parses `bytes` whole and byte by byte, expects the same outcome, returns it.
Parsed parse_both_ways(const kv::resp::Limits& limits, std::string_view bytes)
{
    auto whole = parse_in_pieces(limits, bytes, bytes.size());
    auto pieces = parse_in_pieces(limits, bytes, 1);
    EXPECT_EQ(whole.requests, pieces.requests);
    EXPECT_EQ(whole.last, pieces.last);
    EXPECT_EQ(whole.error, pieces.error);
    if (whole.last != Status::protocol_error) {
        EXPECT_EQ(whole.buffered, pieces.buffered);
    }
    return whole;
}

kv::resp::Limits edge_limits()
{
    kv::resp::Limits limits;
    limits.max_array_length = 10;
    limits.max_bulk_length = 100;
    limits.max_inline_length = 16;
    return limits;
}

} // namespace

TEST(RequestParserLimits, ArrayOfExactlyTheLimitIsAcceptedAndOnePastRefused)
{
    std::vector<std::string> ten(10, "a");
    auto at = parse_both_ways(edge_limits(), kv::resp::encode_command(ten) + "PING\r\n");
    EXPECT_EQ(at.last, Status::need_more) << at.error;
    ASSERT_EQ(at.requests.size(), 2u);
    EXPECT_EQ(at.requests[0], ten);

    std::vector<std::string> eleven(11, "a");
    auto past = parse_both_ways(edge_limits(), kv::resp::encode_command(eleven));
    EXPECT_EQ(past.last, Status::protocol_error);
    EXPECT_EQ(past.error, "Protocol error: invalid multibulk length");
    EXPECT_TRUE(past.requests.empty());
    // Refused from the header alone, before any argument comes.
    EXPECT_EQ(parse_both_ways(edge_limits(), "*11\r\n").last, Status::protocol_error);
    EXPECT_EQ(parse_both_ways(edge_limits(), "*10\r\n").last, Status::need_more);
}

TEST(RequestParserLimits, BulkOfExactlyTheLimitIsAcceptedAndOnePastRefused)
{
    auto at = parse_both_ways(edge_limits(), kv::resp::encode_command({ "SET", "k", std::string(100, 'v') }));
    EXPECT_EQ(at.last, Status::need_more) << at.error;
    ASSERT_EQ(at.requests.size(), 1u);
    EXPECT_EQ(at.requests[0][2], std::string(100, 'v'));
    EXPECT_EQ(at.buffered, 0u);

    auto past = parse_both_ways(edge_limits(), kv::resp::encode_command({ "SET", "k", std::string(101, 'v') }));
    EXPECT_EQ(past.last, Status::protocol_error);
    EXPECT_EQ(past.error, "Protocol error: invalid bulk length");
    // Refused from the length alone, before the bytes it claims come.
    EXPECT_EQ(parse_both_ways(edge_limits(), "*1\r\n$101\r\n").last, Status::protocol_error);
    EXPECT_EQ(parse_both_ways(edge_limits(), "*1\r\n$100\r\n").last, Status::need_more);
}

TEST(RequestParserLimits, InlineLineOfExactlyTheLimitIsAcceptedAndOnePastRefused)
{
    // The limit is on the line before its terminator, CRLF or LF alike.
    const std::string sixteen = "PING 01234567890"; // 16 bytes
    ASSERT_EQ(sixteen.size(), 16u);
    for (std::string end : { "\r\n", "\n" }) {
        auto at = parse_both_ways(edge_limits(), sixteen + end);
        EXPECT_EQ(at.last, Status::need_more) << at.error;
        ASSERT_EQ(at.requests.size(), 1u);
        EXPECT_EQ(at.requests[0], (Request { "PING", "01234567890" }));

        auto past = parse_both_ways(edge_limits(), sixteen + "1" + end);
        EXPECT_EQ(past.last, Status::protocol_error);
        EXPECT_EQ(past.error, "Protocol error: too big inline request");
    }
    // Unterminated: waits at the limit (even with the CR of its CRLF in), refuses one past.
    EXPECT_EQ(parse_both_ways(edge_limits(), sixteen).last, Status::need_more);
    EXPECT_EQ(parse_both_ways(edge_limits(), sixteen + "\r").last, Status::need_more);
    EXPECT_EQ(parse_both_ways(edge_limits(), sixteen + "1").last, Status::protocol_error);
}

TEST(RequestParserLimits, CountStringsOfExactlyTheLimitAreAcceptedAndOnePastRefused)
{
    // A header line ("*1", "$4") may be as long as an inline line: 16 bytes
    // here, its prefix included, whether or not its CRLF has come. Counts are
    // read as Redis reads them (no leading zeros), so a line that long is a
    // big number: a negative count (an empty request, skipped), or a bulk
    // length past the bulk limit, refused for its value, not its length.
    const std::string count_at = "*-1" + std::string(13, '0');  // 16 bytes
    const std::string length_at = "$1" + std::string(14, '0');  // 16 bytes
    auto at = parse_both_ways(edge_limits(), count_at + "\r\n*1\r\n$4\r\nPING\r\n");
    EXPECT_EQ(at.last, Status::need_more) << at.error;
    ASSERT_EQ(at.requests.size(), 1u);
    EXPECT_EQ(at.requests[0], (Request { "PING" }));
    auto length = parse_both_ways(edge_limits(), "*1\r\n" + length_at + "\r\n");
    EXPECT_EQ(length.last, Status::protocol_error);
    EXPECT_EQ(length.error, "Protocol error: invalid bulk length");
    EXPECT_EQ(parse_both_ways(edge_limits(), count_at).last, Status::need_more);
    EXPECT_EQ(parse_both_ways(edge_limits(), count_at + "\r").last, Status::need_more);
    EXPECT_EQ(parse_both_ways(edge_limits(), "*1\r\n" + length_at + "\r").last, Status::need_more);

    const std::string count_past = count_at + "0";   // 17 bytes
    const std::string length_past = length_at + "0"; // 17 bytes
    for (std::string end : { "", "\r", "\r\n" }) {
        auto count = parse_both_ways(edge_limits(), count_past + end);
        EXPECT_EQ(count.last, Status::protocol_error) << "[" << end << "]";
        EXPECT_EQ(count.error, "Protocol error: too big multibulk count string");
        auto past = parse_both_ways(edge_limits(), "*1\r\n" + length_past + end);
        EXPECT_EQ(past.last, Status::protocol_error) << "[" << end << "]";
        EXPECT_EQ(past.error, "Protocol error: too big bulk count string");
    }
    // Complete and well formed, still refused: a long count string is not
    // accepted just because its CRLF came in the same read.
    EXPECT_EQ(parse_both_ways(edge_limits(), count_past + "\r\n*1\r\n$4\r\nPING\r\n").last, Status::protocol_error);
}

TEST(RequestParserLimits, CountStringsOfEveryShapeGetTheirAnswer)
{
    // Plain counts of up to 18 digits are read in one pass; every other
    // shape by the general path. Each gets the same answer either way, and
    // whether it came whole or byte by byte (parse_both_ways).
    kv::resp::Limits limits;
    limits.max_inline_length = 64;
    auto ping = [&](const std::string& header) { return parse_both_ways(limits, header + "\r\n$4\r\nPING\r\n"); };
    auto ping_after = [&](const std::string& header) { return parse_both_ways(limits, header + "\r\n*1\r\n$4\r\nPING\r\n"); };
    for (const std::string& count : std::vector<std::string> { "*1" }) {
        auto result = ping(count);
        EXPECT_EQ(result.last, Status::need_more) << count << ": " << result.error;
        ASSERT_EQ(result.requests.size(), 1u) << count;
        EXPECT_EQ(result.requests[0], (Request { "PING" })) << count;
    }
    // "*0" and "*-1" are empty requests, skipped: the PING after them runs.
    for (const std::string& count : std::vector<std::string> { "*0", "*-1" }) {
        auto result = ping_after(count);
        EXPECT_EQ(result.last, Status::need_more) << count << ": " << result.error;
        ASSERT_EQ(result.requests.size(), 1u) << count;
        EXPECT_EQ(result.requests[0], (Request { "PING" })) << count;
    }
    // Redis reads a count with string2ll: no sign but '-', no spaces, no
    // leading zeros ("*01", "*00", "*-0" included), no other byte.
    for (const std::string& count : std::vector<std::string> { "*+1", "* 1", "*1 ", "*0x1", "*1a", "*01", "*00", "*-0", "*-01",
             "*" + std::string(17, '0') + "1", "*" + std::string(18, '0') + "1", "*" + std::string(18, '9') }) {
        auto result = ping(count);
        EXPECT_EQ(result.last, Status::protocol_error) << count;
        EXPECT_EQ(result.error, "Protocol error: invalid multibulk length") << count;
    }
    auto bulk = [&](const std::string& header) { return parse_both_ways(limits, "*1\r\n" + header + "\r\nPING\r\n"); };
    for (const std::string& length : std::vector<std::string> { "$4" }) {
        auto result = bulk(length);
        EXPECT_EQ(result.last, Status::need_more) << length << ": " << result.error;
        ASSERT_EQ(result.requests.size(), 1u) << length;
        EXPECT_EQ(result.requests[0], (Request { "PING" })) << length;
    }
    for (const std::string& length : std::vector<std::string> { "$-1", "$+4", "$ 4", "$4 ", "$4a", "$", "$04", "$00", "$-0",
             "$" + std::string(17, '0') + "4", "$" + std::string(18, '0') + "4", "$" + std::string(18, '9'), "$" + std::string(19, '9') }) {
        auto result = bulk(length);
        EXPECT_EQ(result.last, Status::protocol_error) << length;
        EXPECT_EQ(result.error, "Protocol error: invalid bulk length") << length;
    }
    // A CR not followed by LF does not end the line.
    EXPECT_EQ(parse_both_ways(limits, "*1\r\n$4\rx").last, Status::need_more);
    EXPECT_EQ(parse_both_ways(limits, "*1\r\n$4\rx\r\n").error, "Protocol error: invalid bulk length");
}

TEST(ParseValueLimits, EveryLimitAtExactlyTheLimitAndOnePast)
{
    auto parse = [](std::string_view bytes) {
        kv::resp::Value value;
        std::size_t consumed = 0;
        auto result = kv::resp::parse_value(bytes, consumed, value, edge_limits());
        // Every proper prefix of a complete reply is incomplete, never invalid.
        if (result == kv::resp::ParseResult::complete) {
            for (std::size_t size = 0; size < consumed; ++size) {
                kv::resp::Value partial;
                std::size_t ignored = 0;
                EXPECT_EQ(kv::resp::parse_value(bytes.substr(0, size), ignored, partial, edge_limits()),
                    kv::resp::ParseResult::incomplete) << size;
            }
        }
        return result;
    };
    using kv::resp::ParseResult;
    // A line: 16 bytes before its CRLF, type byte included.
    EXPECT_EQ(parse("+" + std::string(15, 's') + "\r\n"), ParseResult::complete);
    EXPECT_EQ(parse("+" + std::string(16, 's') + "\r\n"), ParseResult::invalid);
    EXPECT_EQ(parse("+" + std::string(16, 's')), ParseResult::invalid);
    EXPECT_EQ(parse("+" + std::string(15, 's') + "\r"), ParseResult::incomplete);
    // A bulk string.
    std::string bulk;
    kv::resp::append_bulk(bulk, std::string(100, 'b'));
    EXPECT_EQ(parse(bulk), ParseResult::complete);
    bulk.clear();
    kv::resp::append_bulk(bulk, std::string(101, 'b'));
    EXPECT_EQ(parse(bulk), ParseResult::invalid);
    // An array.
    std::string array;
    kv::resp::append_array_header(array, 10);
    for (int i = 0; i < 10; ++i)
        kv::resp::append_integer(array, i);
    EXPECT_EQ(parse(array), ParseResult::complete);
    EXPECT_EQ(parse("*11\r\n"), ParseResult::invalid);
}

// The encoders whose bytes depend on the protocol, as Redis 7.0 writes them.
TEST(Encoders, WriteNullsMapsSetsVerbatimAndBooleansPerProtocol)
{
    using kv::resp::Protocol;
    auto bytes = [](auto write) {
        std::string out;
        write(out);
        return out;
    };
    EXPECT_EQ(bytes([](std::string& o) { kv::resp::append_null(o, Protocol::resp2); }), "$-1\r\n");
    EXPECT_EQ(bytes([](std::string& o) { kv::resp::append_null(o, Protocol::resp3); }), "_\r\n");
    EXPECT_EQ(bytes([](std::string& o) { kv::resp::append_null_array(o, Protocol::resp2); }), "*-1\r\n");
    EXPECT_EQ(bytes([](std::string& o) { kv::resp::append_null_array(o, Protocol::resp3); }), "_\r\n");
    EXPECT_EQ(bytes([](std::string& o) { kv::resp::append_map_header(o, 3, Protocol::resp2); }), "*6\r\n");
    EXPECT_EQ(bytes([](std::string& o) { kv::resp::append_map_header(o, 3, Protocol::resp3); }), "%3\r\n");
    EXPECT_EQ(bytes([](std::string& o) { kv::resp::append_set_header(o, 2, Protocol::resp2); }), "*2\r\n");
    EXPECT_EQ(bytes([](std::string& o) { kv::resp::append_set_header(o, 2, Protocol::resp3); }), "~2\r\n");
    EXPECT_EQ(bytes([](std::string& o) { kv::resp::append_verbatim(o, "a:1\r\n", Protocol::resp2); }), "$5\r\na:1\r\n\r\n");
    EXPECT_EQ(bytes([](std::string& o) { kv::resp::append_verbatim(o, "a:1\r\n", Protocol::resp3); }), "=9\r\ntxt:a:1\r\n\r\n");
    EXPECT_EQ(bytes([](std::string& o) { kv::resp::append_boolean(o, true, Protocol::resp2); }), ":1\r\n");
    EXPECT_EQ(bytes([](std::string& o) { kv::resp::append_boolean(o, false, Protocol::resp3); }), "#f\r\n");
}

TEST(ParseValue, ParsesResp3Types)
{
    std::string bytes = "%2\r\n$4\r\nname\r\n=8\r\ntxt:milk\r\n$4\r\ngone\r\n_\r\n";
    kv::resp::Value value;
    std::size_t consumed = 0;
    ASSERT_EQ(kv::resp::parse_value(bytes, consumed, value), kv::resp::ParseResult::complete);
    EXPECT_EQ(consumed, bytes.size());
    EXPECT_EQ(value.type, kv::resp::Value::Type::map);
    ASSERT_NE(value.field("name"), nullptr);
    EXPECT_EQ(value.field("name")->type, kv::resp::Value::Type::verbatim);
    EXPECT_EQ(value.field("name")->text, "milk");
    EXPECT_EQ(value.field("gone")->type, kv::resp::Value::Type::null);
    bytes = "~2\r\n#t\r\n,1.5\r\n";
    ASSERT_EQ(kv::resp::parse_value(bytes, consumed, value), kv::resp::ParseResult::complete);
    EXPECT_EQ(value.type, kv::resp::Value::Type::set);
    EXPECT_EQ(value.elements[0].integer, 1);
    EXPECT_EQ(value.elements[1].text, "1.5");
    // A verbatim string without its three-letter format is malformed, and so is a null map.
    EXPECT_EQ(kv::resp::parse_value("=3\r\nabc\r\n", consumed, value), kv::resp::ParseResult::invalid);
    EXPECT_EQ(kv::resp::parse_value("%-1\r\n", consumed, value), kv::resp::ParseResult::invalid);
}
