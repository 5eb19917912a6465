// What a bucket name may be. A name is data: it is stored, compared and
// shown, and never becomes a path, a segment name or an argument to parse.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kv {

constexpr std::size_t max_bucket_name_length = 255;

// Empty if `name` is a valid bucket name (1 to 255 bytes, no NUL or other
// control byte), else the reason it is not, as a phrase for an error line.
std::optional<std::string> bucket_name_error(std::string_view name);

} // namespace kv
