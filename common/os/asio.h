// The one place Boost.Asio is included from. With g++ 12 and -std=c++20,
// <boost/asio.hpp> 1.74 fails to compile unless <utility> comes first (its
// awaitable.hpp uses std::exchange without including it).
#pragma once

#include <utility>

#include <boost/asio.hpp>

namespace kv {
namespace asio = boost::asio;
}
