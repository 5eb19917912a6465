// libFuzzer target for the request parser, the first code that touches
// bytes from any client, and for the reply parser. Beyond "no crash, no
// sanitizer report", it checks:
//  - that the request parser's answer does not depend on how the bytes were
//    split into reads: fed whole and fed in pieces, it returns the same
//    requests, fails (or not) with the same error, and holds the same bytes
//    unparsed at the end;
//  - that every request it returns survives a round trip;
//  - that a reply parse_value() accepts survives a round trip (encoded
//    again, it parses to the same value, every byte consumed), and that every
//    proper prefix of it is merely incomplete, as a reply read in pieces is.
//
// Built with clang -fsanitize=fuzzer,address,undefined by tests/CMakeLists.txt;
// ctest runs it for a bounded time (KV_FUZZ_SECONDS) with a -max_len well
// above the parser's 4,096-byte compaction threshold.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "resp.h"

namespace {

struct Outcome {
    std::vector<kv::resp::Request> requests;
    bool failed = false;
    std::string error;
    std::size_t remaining = 0; // buffered() at the end, when not failed
};

kv::resp::Limits small_limits()
{
    kv::resp::Limits limits;
    limits.max_bulk_length = 4096;
    limits.max_array_length = 64;
    limits.max_inline_length = 1024;
    return limits;
}

void drain(kv::resp::RequestParser& parser, Outcome& outcome)
{
    while (!outcome.failed) {
        kv::resp::Request request;
        std::string error;
        auto status = parser.next(request, error);
        if (status == kv::resp::RequestParser::Status::need_more)
            return;
        if (status == kv::resp::RequestParser::Status::protocol_error) {
            if (error.rfind("Protocol error: ", 0) != 0)
                std::abort();
            outcome.failed = true;
            outcome.error = error;
            // Dead: it says so again, whatever comes.
            parser.feed("PING\r\n", 6);
            if (parser.next(request, error) != kv::resp::RequestParser::Status::protocol_error)
                std::abort();
            return;
        }
        outcome.requests.push_back(std::move(request));
    }
}

// Feeds `data` in pieces of the sizes in `chunks` (cycled), as reads would.
Outcome parse(const char* data, size_t size, const std::vector<size_t>& chunks)
{
    kv::resp::RequestParser parser(small_limits());
    Outcome outcome;
    size_t offset = 0;
    for (size_t i = 0; offset < size && !outcome.failed; ++i) {
        size_t length = std::min(chunks[i % chunks.size()], size - offset);
        parser.feed(data + offset, length);
        offset += length;
        drain(parser, outcome);
    }
    if (!outcome.failed)
        outcome.remaining = parser.buffered();
    return outcome;
}

void check_same(const Outcome& whole, const Outcome& pieces)
{
    if (whole.requests != pieces.requests || whole.failed != pieces.failed || whole.error != pieces.error
        || whole.remaining != pieces.remaining)
        std::abort();
}

void encode_value(std::string& out, const kv::resp::Value& value)
{
    using Type = kv::resp::Value::Type;
    switch (value.type) {
    case Type::simple: kv::resp::append_simple(out, value.text); break;
    case Type::error: out += '-'; out += value.text; out += "\r\n"; break;
    case Type::integer: kv::resp::append_integer(out, value.integer); break;
    case Type::bulk: kv::resp::append_bulk(out, value.text); break;
    case Type::null: kv::resp::append_null(out, kv::resp::Protocol::resp3); break;
    case Type::verbatim: kv::resp::append_verbatim(out, value.text, kv::resp::Protocol::resp3); break;
    case Type::boolean: kv::resp::append_boolean(out, value.integer != 0, kv::resp::Protocol::resp3); break;
    case Type::double_number: out += ','; out += value.text; out += "\r\n"; break;
    case Type::big_number: out += '('; out += value.text; out += "\r\n"; break;
    case Type::array:
    case Type::map:
    case Type::set:
        if (value.type == Type::map)
            kv::resp::append_map_header(out, value.elements.size() / 2, kv::resp::Protocol::resp3);
        else if (value.type == Type::set)
            kv::resp::append_set_header(out, value.elements.size(), kv::resp::Protocol::resp3);
        else
            kv::resp::append_array_header(out, value.elements.size());
        for (const auto& element : value.elements)
            encode_value(out, element);
        break;
    }
}

bool same_value(const kv::resp::Value& a, const kv::resp::Value& b)
{
    using Type = kv::resp::Value::Type;
    if (a.type != b.type)
        return false;
    switch (a.type) {
    case Type::simple:
    case Type::error:
    case Type::bulk:
    case Type::verbatim:
    case Type::double_number:
    case Type::big_number: return a.text == b.text;
    case Type::integer:
    case Type::boolean: return a.integer == b.integer;
    case Type::null: return true;
    case Type::array:
    case Type::map:
    case Type::set:
        if (a.elements.size() != b.elements.size())
            return false;
        for (size_t i = 0; i < a.elements.size(); ++i) {
            if (!same_value(a.elements[i], b.elements[i]))
                return false;
        }
        return true;
    }
    return false;
}

void check_reply_parser(std::string_view bytes)
{
    const auto limits = small_limits();
    kv::resp::Value value;
    size_t consumed = 0;
    if (kv::resp::parse_value(bytes, consumed, value, limits) != kv::resp::ParseResult::complete)
        return;
    if (consumed == 0 || consumed > bytes.size())
        std::abort();
    // What it accepted, encoded again, parses to the same value.
    std::string encoded;
    encode_value(encoded, value);
    kv::resp::Value again;
    size_t again_consumed = 0;
    if (kv::resp::parse_value(encoded, again_consumed, again, limits) != kv::resp::ParseResult::complete
        || again_consumed != encoded.size() || !same_value(value, again))
        std::abort();
    // The reply alone is the same reply; any proper prefix of it is only incomplete.
    kv::resp::Value alone;
    size_t alone_consumed = 0;
    if (kv::resp::parse_value(bytes.substr(0, consumed), alone_consumed, alone, limits) != kv::resp::ParseResult::complete
        || alone_consumed != consumed || !same_value(value, alone))
        std::abort();
    size_t step = consumed > 512 ? consumed / 256 : 1; // bounded work on long replies
    for (size_t size = 0; size < consumed; size += step) {
        kv::resp::Value partial;
        size_t partial_consumed = 0;
        if (kv::resp::parse_value(bytes.substr(0, size), partial_consumed, partial, limits) != kv::resp::ParseResult::incomplete)
            std::abort();
    }
    kv::resp::Value partial;
    size_t partial_consumed = 0;
    if (kv::resp::parse_value(bytes.substr(0, consumed - 1), partial_consumed, partial, limits) != kv::resp::ParseResult::incomplete)
        std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size == 0)
        return 0;
    // The first byte chooses the read sizes: 1 to 17 bytes, or a mix of
    // small and large reads (97 to 2,174 bytes): large reads that end
    // mid-request are what make the parser compact its buffer (past 4,096
    // bytes consumed). Byte-by-byte reads, below, end one byte short of
    // every element.
    std::vector<size_t> chunks;
    if (data[0] & 0x80)
        chunks = { 1u + data[0] % 5u, 97u + (data[0] >> 2) % 32u * 67u };
    else
        chunks = { 1u + data[0] % 17u };
    const char* bytes = reinterpret_cast<const char*>(data) + 1;
    Outcome whole = parse(bytes, size - 1, { size });
    Outcome pieces = parse(bytes, size - 1, chunks);
    check_same(whole, pieces);
    Outcome byte_by_byte = parse(bytes, size - 1, { 1 });
    check_same(whole, byte_by_byte);

    for (const auto& request : whole.requests) {
        std::string encoded = kv::resp::encode_command(request);
        kv::resp::RequestParser again;
        again.feed(encoded.data(), encoded.size());
        kv::resp::Request back;
        std::string error;
        if (again.next(back, error) != kv::resp::RequestParser::Status::request || back != request
            || again.buffered() != 0)
            std::abort();
    }

    check_reply_parser(std::string_view(reinterpret_cast<const char*>(data), size));
    check_reply_parser(std::string_view(bytes, size - 1));
    return 0;
}
