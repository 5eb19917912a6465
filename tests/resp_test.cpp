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
