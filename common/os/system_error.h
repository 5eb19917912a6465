// The one idiom for a failed system call: an exception that names the call,
// the object it was applied to and the errno text, so that the message a user
// finally sees is one line: "unable to create segment /kv.3f2a.7: No space
// left on device".
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <string_view>

namespace kv {

class SystemError : public std::runtime_error {
public:
    // `action` says what failed in words ("unable to bind socket"), `object`
    // names what it was applied to, `error` is the errno value.
    SystemError(std::string_view action, std::string_view object, int error);
    int error() const { return error_; }

private:
    int error_;
};

// Throws SystemError(action, object, errno) if `result` is -1, else returns it.
template <typename T>
T check(T result, std::string_view action, std::string_view object)
{
    if (result == static_cast<T>(-1))
        throw SystemError(action, object, errno);
    return result;
}

} // namespace kv
