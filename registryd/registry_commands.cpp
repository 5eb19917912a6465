#include "registry_commands.h"

#include <limits>

#include "command_table.h"
#include "error_code.h"
#include "restart_policy.h"

namespace kv {

namespace {

// HISTORY [count]: every exit kept, or the `count` newest. The count's
// errors are Redis's for a count argument (LPOP, SPOP): not a number, then
// a negative one.
void history(Registry& registry, const resp::Request& request, const Responder& responder)
{
    std::size_t count = std::numeric_limits<std::size_t>::max();
    if (request.size() == 2) {
        const std::string& text = request[1];
        long long value = 0;
        std::string out;
        if (!parse_long_long(text, value)) // Redis's string2ll: "01", "-0", "+1" are not integers
            append_error(out, ErrorCode::error, "value is not an integer or out of range");
        else if (value < 0)
            append_error(out, ErrorCode::error, "value is out of range, must be positive");
        if (!out.empty()) {
            responder.send(std::move(out));
            return;
        }
        count = static_cast<std::size_t>(value);
    }
    registry.history(count, responder);
}

// CREATE name [RESTART temporary|transient|permanent] [KEEP] [HERE]: the option
// words and the policy in any case, as Redis's option words; anything else
// is Redis's "syntax error". HERE: on this node, whatever --placement says
// (what a node sends when it forwards a CREATE to the node a name is placed on).
bool is_word(const std::string& argument, std::string_view word)
{
    return same_word(argument, word);
}

void create(Registry& registry, const resp::Request& request, const Responder& responder)
{
    std::optional<RestartPolicy> policy;
    bool keep = false;
    bool here = false;
    std::string out;
    for (std::size_t i = 2; i < request.size() && out.empty(); ++i) {
        if (is_word(request[i], "KEEP")) {
            keep = true;
        } else if (is_word(request[i], "HERE")) {
            here = true;
        } else if (is_word(request[i], "RESTART") && i + 1 < request.size()) {
            policy = parse_restart_policy(request[++i]);
            if (!policy)
                append_error(out, ErrorCode::error, "unable to create bucket " + printable(request[1]) + ": invalid restart policy "
                        + printable(request[i]) + ": expected " + restart_policy_choices);
        } else {
            append_error(out, ErrorCode::error, "syntax error");
        }
    }
    if (!out.empty()) {
        responder.send(std::move(out));
        return;
    }
    registry.create(request[1], policy, keep, here, responder);
}

using RegistryCommand = CommandEntry<void (*)(Registry&, const resp::Request&, const Responder&)>;

const RegistryCommand commands[] = {
    { "CREATE", -2, create, 5,
        { "write", 0, 0, 0, "Start a bucket of this name (or return the existing one), with a restart policy", "registry", "@write @slow", "kv" } },
    { "LOOKUP", 2, [](Registry& r, const resp::Request& q, const Responder& a) { r.lookup(q[1], a); }, 0,
        { "readonly fast", 0, 0, 0, "Return the bucket of this name", "registry", "@read @fast", "kv" } },
    { "LIST", 1, [](Registry& r, const resp::Request&, const Responder& a) { r.list(a); }, 0,
        { "readonly", 0, 0, 0, "Return every bucket with its figures", "registry", "@read @slow", "kv" } },
    { "STOP", 2, [](Registry& r, const resp::Request& q, const Responder& a) { r.stop(q[1], a); }, 0,
        { "write", 0, 0, 0, "Stop a bucket; reply once its name is gone", "registry", "@write @slow", "kv" } },
    { "MONITOR", 2, [](Registry& r, const resp::Request& q, const Responder& a) { r.monitor(q[1], a); }, 0,
        { "readonly", 0, 0, 0, "Reply when the bucket exits, saying why", "registry", "@read @slow @blocking", "kv" } },
    { "HISTORY", -1, history, 2,
        { "readonly", 0, 0, 0, "Return the last bucket exits, newest first, with their reasons and times", "registry", "@read @slow", "kv" } },
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
    const RegistryCommand* command = find_command<commands>(request, error);
    if (!command) {
        responder.send(std::move(error));
        return;
    }
    command->run(registry, request, responder);
}

} // namespace kv
