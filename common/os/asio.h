// The one place Boost.Asio is included from. g++ 12 with -std=c++20 needs
// <utility> before Asio's coroutine headers (see ../shared/PITFALLS.md).
#pragma once

#include <utility>

#include <boost/asio.hpp>

namespace kv {
namespace asio = boost::asio;
}
