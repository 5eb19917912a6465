// The restart policy: what CREATE's `RESTART` argument, registryd's
// --restart flag, kvctl create --restart and LIST/HISTORY name, as OTP's
// child specs do (`restart: :temporary | :transient | :permanent`).
//
//   temporary  never restarted (the default, as in the guide)
//   transient  restarted after an abnormal exit: a signal or a non-zero status
//   permanent  restarted after any exit, except one registryd asked for
//              (STOP, or registryd's own shutdown)
#pragma once

#include <optional>
#include <string_view>

namespace kv {

enum class RestartPolicy { temporary, transient, permanent };

const char* to_string(RestartPolicy policy);
// Case-insensitive, as Redis's option words are; empty for any other word.
std::optional<RestartPolicy> parse_restart_policy(std::string_view word);

// "temporary|transient|permanent", for usage and error texts.
constexpr const char* restart_policy_choices = "temporary|transient|permanent";

} // namespace kv
