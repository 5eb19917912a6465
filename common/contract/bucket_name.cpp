#include "bucket_name.h"

#include <cstdio>

namespace kv {

std::optional<std::string> bucket_name_error(std::string_view name)
{
    if (name.empty())
        return "a bucket name must not be empty";
    if (name.size() > max_bucket_name_length)
        return "a bucket name is at most 255 bytes, this one has " + std::to_string(name.size());
    for (unsigned char c : name) {
        if (c < 0x20 || c == 0x7f) {
            char code[8];
            std::snprintf(code, sizeof code, "0x%02x", c);
            return std::string("a bucket name must not contain control bytes (found ") + code + ")";
        }
    }
    return std::nullopt;
}

} // namespace kv
