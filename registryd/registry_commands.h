// registryd's command table: CREATE, LOOKUP, LIST, STOP, MONITOR, PING.
#pragma once

#include "registry.h"
#include "resp.h"
#include "resp_server.h"

namespace kv {

// Parses `request` against the table and runs it on `registry`; every
// request, malformed or not, gets exactly one reply through `responder`.
void run_registry_command(Registry& registry, const resp::Request& request, const Responder& responder);

} // namespace kv
