#include "bucket_name.h"

#include <cstdint>
#include <cstdio>

#include "log.h"

namespace kv {

namespace {

std::string hex_byte(unsigned char c)
{
    char code[8];
    std::snprintf(code, sizeof code, "0x%02x", c);
    return code;
}

std::string code_point_text(std::uint32_t code_point)
{
    char text[16];
    std::snprintf(text, sizeof text, "U+%04X", static_cast<unsigned>(code_point));
    return text;
}

// Decodes the character at `at` by the Unicode standard's table of
// well-formed UTF-8 (Table 3-7): each lead byte fixes the range its second
// byte may take, which is what rules out overlong forms (C0, C1, E0 80..9F,
// F0 80..8F), surrogates (ED A0..BF) and code points past U+10FFFF (F4 90..,
// F5..FF). Returns the character's length, or 0 if it is not well formed.
std::size_t decode_utf8(std::string_view text, std::size_t at, std::uint32_t& code_point)
{
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[at + i]); };
    const unsigned char lead = byte(0);
    if (lead < 0x80) {
        code_point = lead;
        return 1;
    }
    std::size_t length;
    unsigned char low = 0x80, high = 0xbf; // the second byte's range
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        if (lead == 0xe0)
            low = 0xa0;
        if (lead == 0xed)
            high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        if (lead == 0xf0)
            low = 0x90;
        if (lead == 0xf4)
            high = 0x8f;
    } else {
        return 0;
    }
    if (at + length > text.size() || byte(1) < low || byte(1) > high)
        return 0;
    code_point = lead & (0x7f >> length);
    for (std::size_t i = 1; i < length; ++i) {
        if (i > 1 && (byte(i) < 0x80 || byte(i) > 0xbf))
            return 0;
        code_point = (code_point << 6) | (byte(i) & 0x3f);
    }
    return length;
}

} // namespace

std::optional<std::string> bucket_name_error(std::string_view name)
{
    if (name.empty())
        return "a bucket name must not be empty";
    if (name.size() > max_bucket_name_length)
        return "a bucket name is at most 255 bytes, this one has " + std::to_string(name.size());
    for (std::size_t at = 0; at < name.size();) {
        std::uint32_t code_point = 0;
        const std::size_t length = decode_utf8(name, at, code_point);
        if (length == 0)
            return "a bucket name must be valid UTF-8 (byte " + hex_byte(static_cast<unsigned char>(name[at]))
                + " at offset " + std::to_string(at) + " is not)";
        if (code_point < 0x20 || code_point == 0x7f)
            return "a bucket name must not contain control bytes (found " + hex_byte(static_cast<unsigned char>(code_point)) + ")";
        // C1 controls (U+0080..U+009F) include CSI, which terminals obey as ESC [.
        if (code_point >= 0x80 && code_point <= 0x9f)
            return "a bucket name must not contain control characters (found " + code_point_text(code_point) + ")";
        at += length;
    }
    return std::nullopt;
}

std::string shown_bucket_name(std::string_view name)
{
    std::string shown = printable(name);
    if (!bucket_name_error(name))
        return shown;
    std::string escaped;
    for (unsigned char c : shown) {
        if (c < 0x80) {
            escaped += static_cast<char>(c);
        } else {
            char code[8];
            std::snprintf(code, sizeof code, "\\x%02x", c);
            escaped += code;
        }
    }
    return escaped;
}

} // namespace kv
