#include "system_error.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>


namespace kv {

static std::string describe(std::string_view action, std::string_view object, int error)
{
    std::string text(action);
    if (!object.empty()) {
        text += ' ';
        text += object;
    }
    text += ": ";
    text += std::strerror(error);
    return text;
}

SystemError::SystemError(std::string_view action, std::string_view object, int error)
    : std::runtime_error(describe(action, object, error))
    , error_(error)
{
}

} // namespace kv
