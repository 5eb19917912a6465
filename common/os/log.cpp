#include "log.h"

#include <cstdio>

#include <unistd.h>

#include <string>

namespace kv {

static std::string program_prefix = "kv: ";

void set_log_program(std::string_view program)
{
    program_prefix = std::string(program) + "[" + std::to_string(::getpid()) + "]: ";
}

void log_line(std::string_view text)
{
    std::string line = program_prefix;
    line += text;
    line += '\n';
    // Logging must never stop the program: a closed stderr is ignored.
    [[maybe_unused]] auto written = ::write(STDERR_FILENO, line.data(), line.size());
}

std::string printable(std::string_view bytes)
{
    std::string out;
    for (unsigned char c : bytes) {
        if (c < 0x20 || c == 0x7f || c == '\\') {
            char code[8];
            std::snprintf(code, sizeof code, "\\x%02x", c);
            out += code;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

} // namespace kv
