#include "registry_commands.h"

#include "command_table.h"

namespace kv {

namespace {

using RegistryCommand = CommandEntry<void (*)(Registry&, const resp::Request&, const Responder&)>;

const RegistryCommand commands[] = {
    { "CREATE", 2, [](Registry& r, const resp::Request& q, const Responder& a) { r.create(q[1], a); } },
    { "LOOKUP", 2, [](Registry& r, const resp::Request& q, const Responder& a) { r.lookup(q[1], a); } },
    { "LIST", 1, [](Registry& r, const resp::Request&, const Responder& a) { r.list(a); } },
    { "STOP", 2, [](Registry& r, const resp::Request& q, const Responder& a) { r.stop(q[1], a); } },
    { "MONITOR", 2, [](Registry& r, const resp::Request& q, const Responder& a) { r.monitor(q[1], a); } },
    { "PING", -1, [](Registry&, const resp::Request& q, const Responder& a) {
         std::string out;
         answer_ping(q, out);
         a.send(std::move(out));
     }, 2 },
};

} // namespace

void run_registry_command(Registry& registry, const resp::Request& request, const Responder& responder)
{
    std::string error;
    const RegistryCommand* command = find_command(commands, request, error);
    if (!command) {
        responder.send(std::move(error));
        return;
    }
    command->run(registry, request, responder);
}

} // namespace kv
