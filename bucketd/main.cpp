// bucketd: one process per bucket, shown by ps as "bucketd <name>".
//
// Started only by registryd, which passes the name as the one argument and
// the rest in the environment (so ps shows the name and nothing else):
//   KV_INSTANCE      the registryd instance this bucket belongs to (how a later
//                    registryd finds the buckets of one that died)
//   KV_SEGMENT_FD    an empty shared-memory object registryd created, to size and fill
//   KV_SEGMENT       its name (for messages)
//   KV_LISTEN_FD     a listening Unix socket registryd bound, to serve RESP on
//   KV_SOCKET        its path (for messages)
//   KV_NOTIFY_FD     descriptor to write "\n" to once the segment is ready
//   KV_BUCKET_SIZE   segment size in bytes
//   KV_SERVER_CONFIG limits and access policy for the socket (ServerConfig::encode)
//   KV_DEBUG_COMMAND "1" to accept DEBUG SEGFAULT / DEBUG EXIT (tests)
// SIGTERM (also the parent-death signal): stop serving, exit 0. A bucket
// creates and removes no file: registryd made its segment and socket file and
// removes them once it has reaped the bucket, so a bucket that outlives its
// registryd can never remove what a later one made.
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <exception>
#include <string>

#include <sys/stat.h>

#include "asio.h"
#include "bucket_commands.h"
#include "bucket_map.h"
#include "bucket_name.h"
#include "log.h"
#include "resp_server.h"
#include "system_error.h"
#include "unique_fd.h"

namespace {

std::string require_environment(const char* variable)
{
    const char* value = std::getenv(variable);
    if (!value || !*value)
        throw std::invalid_argument(std::string("missing ") + variable + " (bucketd is started by registryd)");
    return value;
}

} // namespace

int main(int argc, char** argv)
{
    kv::set_log_program("bucketd");
    std::signal(SIGPIPE, SIG_IGN);
    ::umask(077);

    if (argc != 2 || kv::bucket_name_error(argv[1])) {
        kv::log_line("usage: bucketd NAME (started by registryd, not by hand)");
        return 2;
    }
    std::string name = argv[1];
    // Outlives the try block: a failure is also told to registryd on the
    // readiness pipe, as one line, so CREATE can say why the bucket could not start.
    kv::UniqueFd notify;

    try {
        int notify_fd = std::stoi(require_environment("KV_NOTIFY_FD"));
        notify = kv::UniqueFd(notify_fd);
        std::string segment_name = require_environment("KV_SEGMENT");
        kv::UniqueFd segment(std::stoi(require_environment("KV_SEGMENT_FD")));
        std::string socket_path = require_environment("KV_SOCKET");
        kv::UniqueFd listener(std::stoi(require_environment("KV_LISTEN_FD")));
        std::size_t size = std::stoull(require_environment("KV_BUCKET_SIZE"));
        const char* debug = std::getenv("KV_DEBUG_COMMAND");
        auto server_config = kv::ServerConfig::decode(require_environment("KV_SERVER_CONFIG"));

        // One thread, and nothing touches the loop from another: no locks.
        kv::asio::io_context io(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE);
        kv::asio::signal_set stop_signals(io, SIGTERM, SIGINT);

        kv::BucketMap map(std::move(segment), segment_name, size);
        kv::BucketContext context { map, debug && std::string(debug) == "1" };
        kv::RespServer server(io, std::move(listener), socket_path, [&context](kv::resp::Request& request, kv::ReplySink& reply) {
            kv::run_bucket_command(context, request, reply.now());
        }, server_config);

        stop_signals.async_wait([&](const boost::system::error_code& error, int) {
            if (error)
                return;
            server.close();
            io.stop();
        });

        // Readiness, s6-style: one newline once the segment is ready (the
        // socket was listening before we started); direct readers may trust
        // the segment from now on too.
        map.publish_alive();
        if (::write(notify.get(), "\n", 1) != 1)
            throw kv::SystemError("unable to notify registryd through descriptor", std::to_string(notify_fd), errno);
        notify.reset();

        io.run();
        return 0;
    } catch (const std::exception& error) {
        kv::log_line("bucket " + kv::printable(name) + ": " + error.what());
        if (notify) {
            std::string line = std::string(error.what()) + "\n";
            [[maybe_unused]] auto written = ::write(notify.get(), line.data(), line.size());
        }
        return 1;
    }
}
