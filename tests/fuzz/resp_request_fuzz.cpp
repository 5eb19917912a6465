// libFuzzer target for the request parser, the first code that touches
// bytes from any client. Beyond "no crash, no sanitizer report", it checks
// that the parser's answer does not depend on how the bytes were split into
// reads, and that every request it returns survives a round trip.
//
// Built with clang -fsanitize=fuzzer,address,undefined by tests/CMakeLists.txt;
// ctest runs it for a bounded time (KV_FUZZ_SECONDS).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "resp.h"

namespace {

struct Outcome {
    std::vector<kv::resp::Request> requests;
    bool failed = false;
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
            return;
        }
        outcome.requests.push_back(std::move(request));
    }
}

Outcome parse(const uint8_t* data, size_t size, size_t chunk)
{
    kv::resp::RequestParser parser(small_limits());
    Outcome outcome;
    for (size_t offset = 0; offset < size && !outcome.failed; offset += chunk) {
        size_t length = std::min(chunk, size - offset);
        parser.feed(reinterpret_cast<const char*>(data) + offset, length);
        drain(parser, outcome);
    }
    return outcome;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size == 0)
        return 0;
    size_t chunk = 1 + data[0] % 17;
    Outcome whole = parse(data + 1, size - 1, size);
    Outcome pieces = parse(data + 1, size - 1, chunk);
    // Limits are checked as bytes arrive, so a stream that fails whole may
    // fail earlier in pieces, but every request returned must agree.
    size_t common = std::min(whole.requests.size(), pieces.requests.size());
    for (size_t i = 0; i < common; ++i) {
        if (whole.requests[i] != pieces.requests[i])
            std::abort();
    }
    if (!whole.failed && !pieces.failed && whole.requests.size() != pieces.requests.size())
        std::abort();

    for (const auto& request : whole.requests) {
        std::string encoded = kv::resp::encode_command(request);
        kv::resp::RequestParser again;
        again.feed(encoded.data(), encoded.size());
        kv::resp::Request back;
        std::string error;
        if (again.next(back, error) != kv::resp::RequestParser::Status::request || back != request)
            std::abort();
    }

    // The reply parser (used by kvctl on whatever a socket sends) must not crash either.
    kv::resp::Value value;
    size_t consumed = 0;
    kv::resp::parse_value(std::string_view(reinterpret_cast<const char*>(data), size), consumed, value, small_limits());
    return 0;
}
