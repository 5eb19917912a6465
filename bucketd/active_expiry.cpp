#include "active_expiry.h"

namespace kv {

void ActiveExpiry::arm()
{
    armed_ = true;
    timer_.expires_after(period);
    timer_.async_wait([this](const boost::system::error_code& error) {
        armed_ = false;
        if (error)
            return; // cancelled: the loop is stopping
        map_.expire_cycle(least_slots, budget);
        poke(); // on while some key still has an expiry time
    });
}

} // namespace kv
