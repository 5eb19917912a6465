// registryd's command table: CREATE, LOOKUP, LIST, STOP, MONITOR, HISTORY, PING.
#pragma once

#include <vector>

#include "command_table.h"
#include "registry.h"
#include "resp.h"
#include "resp_server.h"

namespace kv {

// Parses `request` against the table and runs it on `registry`; every
// request, malformed or not, gets exactly one reply through `responder`.
void run_registry_command(Registry& registry, const resp::Request& request, const Responder& responder);

// The registry's table as COMMAND describes it (connection_commands.h).
std::vector<CommandInfo> registry_command_infos();

} // namespace kv
