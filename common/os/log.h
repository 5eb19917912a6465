// One line per event on stderr: "registryd[4200]: bucket shopping (pid 4242) killed by SIGKILL".
#pragma once

#include <string>
#include <string_view>

namespace kv {

// Sets the program name printed before every line (once, at start-up).
void set_log_program(std::string_view program);

// Bytes as they may be printed inside one log or error line: control bytes
// and backslashes escaped as \xNN (a bucket name, a key: anything a user sent).
std::string printable(std::string_view bytes);

// Writes the line with a single write(2), so lines from registryd and its
// buckets sharing one stderr never interleave.
void log_line(std::string_view text);

} // namespace kv
