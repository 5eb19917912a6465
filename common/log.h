// One line per event on stderr: "registryd[4200]: bucket shopping (pid 4242) killed by SIGKILL".
#pragma once

#include <string_view>

namespace kv {

// Sets the program name printed before every line (once, at start-up).
void set_log_program(std::string_view program);

// Writes the line with a single write(2), so lines from registryd and its
// buckets sharing one stderr never interleave.
void log_line(std::string_view text);

} // namespace kv
