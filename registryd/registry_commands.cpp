#include "registry_commands.h"

#include "command_table.h"

namespace kv {

namespace {

using RegistryCommand = CommandEntry<void (*)(Registry&, const resp::Request&, const Responder&)>;

const RegistryCommand commands[] = {
    { "CREATE", 2, [](Registry& r, const resp::Request& q, const Responder& a) { r.create(q[1], a); }, 0,
        { "write", 0, 0, 0, "Start a bucket of this name (or return the existing one)", "registry", "@write @slow", "kv" } },
    { "LOOKUP", 2, [](Registry& r, const resp::Request& q, const Responder& a) { r.lookup(q[1], a); }, 0,
        { "readonly fast", 0, 0, 0, "Return the bucket of this name", "registry", "@read @fast", "kv" } },
    { "LIST", 1, [](Registry& r, const resp::Request&, const Responder& a) { r.list(a); }, 0,
        { "readonly", 0, 0, 0, "Return every bucket with its figures", "registry", "@read @slow", "kv" } },
    { "STOP", 2, [](Registry& r, const resp::Request& q, const Responder& a) { r.stop(q[1], a); }, 0,
        { "write", 0, 0, 0, "Stop a bucket; reply once its name is gone", "registry", "@write @slow", "kv" } },
    { "MONITOR", 2, [](Registry& r, const resp::Request& q, const Responder& a) { r.monitor(q[1], a); }, 0,
        { "readonly", 0, 0, 0, "Reply when the bucket exits, saying why", "registry", "@read @slow @blocking", "kv" } },
    { "PING", -1, [](Registry&, const resp::Request& q, const Responder& a) {
         std::string out;
         answer_ping(q, out);
         a.send(std::move(out));
     }, 2, { "fast", 0, 0, 0, "Ping the server", "connection", "@fast @connection" } },
};

} // namespace

std::vector<CommandInfo> registry_command_infos() { return describe_commands(commands); }

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
