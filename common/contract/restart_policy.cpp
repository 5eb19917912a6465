#include "restart_policy.h"

#include "command_table.h"

#include <string>

namespace kv {

const char* to_string(RestartPolicy policy)
{
    switch (policy) {
    case RestartPolicy::temporary: return "temporary";
    case RestartPolicy::transient: return "transient";
    case RestartPolicy::permanent: return "permanent";
    }
    return "unknown";
}

std::optional<RestartPolicy> parse_restart_policy(std::string_view word)
{
    for (auto policy : { RestartPolicy::temporary, RestartPolicy::transient, RestartPolicy::permanent }) {
        const std::string_view name = to_string(policy);
        if (same_word(word, name))
            return policy;
    }
    return std::nullopt;
}

} // namespace kv
