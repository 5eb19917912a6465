#include "log.h"

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

} // namespace kv
