// Prerequisites of a test's environment, stated one way: skipped with the
// reason when missing, failed when CI=true. Header only, so unit tests that do
// not link the daemon fixture can use it too.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace kv::test {

// The full path of `name` found on PATH as a shell would find it (an
// executable regular file), or "" if there is none. Tests find the tools they
// run (redis-cli, setpriv, unshare ...) this way, never at a fixed path.
inline std::string find_program(const std::string& name)
{
    if (name.empty() || name.find('/') != std::string::npos)
        return {};
    const char* path = std::getenv("PATH");
    std::string_view directories = path ? path : "/usr/local/bin:/usr/bin:/bin";
    for (;;) {
        auto colon = directories.find(':');
        std::string directory(directories.substr(0, colon));
        std::string candidate = (directory.empty() ? std::string(".") : directory) + "/" + name;
        struct stat info;
        if (::stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
            return candidate;
        if (colon == std::string_view::npos)
            return {};
        directories.remove_prefix(colon + 1);
    }
}

// True when the environment variable CI is "true".
inline bool in_ci()
{
    const char* ci = std::getenv("CI");
    return ci && std::string_view(ci) == "true";
}

// KV_REQUIRE(met, what): the one way a test states a prerequisite of its
// environment (root, a tool on PATH). When `met` is false the test stops
// there: skipped with "needs <what>" as the reason, or, when CI=true, failed
// with that reason, since a green CI run must have run every test. Use it in
// SetUp or in a test body, like GTEST_SKIP (it returns from the function, so
// only in functions returning void); when it fails in SetUp the body is not run.
#define KV_REQUIRE(met, what)                                                                                   \
    if (met)                                                                                                    \
        ;                                                                                                       \
    else if (::kv::test::in_ci())                                                                               \
        GTEST_FAIL() << "CI=true and a prerequisite is missing: needs " << what;                               \
    else                                                                                                        \
        GTEST_SKIP() << "needs " << what

// KV_REQUIRE_ROOT(why): KV_REQUIRE(geteuid() == 0, "root " why).
#define KV_REQUIRE_ROOT(why) KV_REQUIRE(::geteuid() == 0, std::string("root ") + (why))

} // namespace kv::test
