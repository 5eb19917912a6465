// What a bucket name may be. A name is data: it is stored, compared and
// shown, and never becomes a path, a segment name or an argument to parse.
// It is text: valid UTF-8 with no control characters, so that a log line,
// `ps`, a JSON document or a terminal that shows it never carries raw
// invalid bytes. (Keys and values are any bytes; only names are text.)
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kv {

constexpr std::size_t max_bucket_name_length = 255;

// Empty if `name` is a valid bucket name (1 to 255 bytes of strict UTF-8:
// no overlong forms, no surrogates, nothing past U+10FFFF; and no control
// character, C0, DEL or C1), else the reason it is not, as a phrase for an
// error line.
std::optional<std::string> bucket_name_error(std::string_view name);

// A name as messages show it (kvctl's, textd's log): printable()'s escapes,
// and, for a name that is not valid (CREATE refuses it), every byte past
// ASCII as \xNN too, so no message carries invalid bytes to a terminal.
std::string shown_bucket_name(std::string_view name);

} // namespace kv
