// bucketd: one process per bucket, shown by ps as "bucketd <name>".
//
// Started only by registryd, which passes the name as the one argument and
// the rest in the environment (common/contract/bucket_launch.h: the launch
// contract, its encoder and its decoder).
// With registryd's --listen-tcp it also serves a TCP listener registryd
// bound for it, to clients that AUTH with the password it reads once from an
// inherited descriptor (never from argv or the environment).
// `bucketd --version` (and nothing else) may be run by hand.
// SIGTERM (also the parent-death signal): stop serving, exit 0. A bucket
// creates and removes no file: registryd made its segment and socket file and
// removes them once it has reaped the bucket, so a bucket that outlives its
// registryd can never remove what a later one made.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include <sys/stat.h>

#include "active_expiry.h"
#include "asio.h"
#include "bucket_commands.h"
#include "bucket_launch.h"
#include "bucket_map.h"
#include "bucket_name.h"
#include "log.h"
#include "password_file.h"
#include "resp_server.h"
#include "system_error.h"
#include "tcp_listener.h"
#include "unique_fd.h"

namespace {

// What the connection commands every socket serves know of a bucket.
kv::ServerRole bucket_role(kv::BucketMap& map, unsigned tcp_port)
{
    kv::ServerRole role;
    role.tcp_port = tcp_port;
    role.name = "bucket";
    role.commands = kv::bucket_command_infos();
    role.key_count = [&map] { return map.size(); };
    role.expiring_count = [&map] { return map.expiring(); };
    role.expired_count = [&map] { return map.expired_keys(); };
    // MULTI/EXEC as Redis: EXEC runs its whole body in ONE batch of the
    // table, so a direct reader sees all of a transaction or none of it. The
    // batch is committed even when some commands answered errors (Redis
    // does not roll back); each command's own all-or-nothing (a `full` MSET)
    // is a savepoint nested in it.
    role.transactions = kv::Transactions::queued;
    role.watchers = &map.watchers();
    map.watchers().expire_if_needed = [&map](std::string_view key) { map.expire_if_needed(key); };
    role.run_atomically = [&map](const std::function<void()>& body) {
        kv::BucketMap::FrozenClock one_instant(map); // expiry judged at one time for the whole EXEC, as Redis
        kv::BucketMap::OneFenceDecision one_fence(map); // cluster mode: all of its writes pass the fence, or none
        auto batch = map.begin_batch();
        body();
        batch.commit();
    };
    return role;
}

} // namespace

int main(int argc, char** argv)
{
    kv::set_log_program("bucketd");
    std::signal(SIGPIPE, SIG_IGN);
    ::umask(077);

    // `bucketd --version`, by hand. registryd starts every bucket with
    // KV_INSTANCE in its environment, so a bucket named "--version" is still
    // a bucket; nothing else but a name is ever taken.
    if (argc == 2 && std::string_view(argv[1]) == "--version" && !std::getenv(kv::instance_environment_variable)) {
        std::printf("bucketd %s\n", KV_VERSION);
        return 0;
    }
    if (argc != 2 || kv::bucket_name_error(argv[1])) {
        kv::log_line(kv::LogLevel::error, "usage: bucketd NAME (started by registryd, not by hand)");
        return 2;
    }
    std::string name = argv[1];
    // Outlives the try block: a failure is also told to registryd on the
    // readiness pipe, as one line, so CREATE can say why the bucket could not start.
    kv::UniqueFd notify;

    try {
        // The readiness pipe is taken as soon as it is known, so a failure to
        // decode the rest is still told to registryd.
        notify = kv::UniqueFd(kv::decode_notify_descriptor());
        kv::BucketEnvironment environment = kv::decode_bucket_environment();
        kv::set_log_level(environment.log_level);
        kv::UniqueFd segment(environment.segment_fd);
        kv::UniqueFd listener(environment.listen_fd);
        // --listen-tcp: a TCP listener too, served only to clients that AUTH
        // with the password read (once) from the descriptor registryd gave.
        kv::UniqueFd tcp_listener(environment.tcp_listen_fd);
        std::optional<std::string> password;
        if (tcp_listener) {
            kv::UniqueFd password_fd(environment.password_fd);
            password = kv::read_password(password_fd.get());
        }
        const unsigned tcp_port = tcp_listener ? kv::address_port(environment.tcp_address) : 0;

        // One thread, and nothing touches the loop from another: no locks.
        kv::asio::io_context io(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE);
        kv::asio::signal_set stop_signals(io, SIGTERM, SIGINT);

        std::optional<kv::BucketMap> maybe_map;
        if (environment.keep_data)
            maybe_map.emplace(std::move(segment), environment.segment_name, environment.bucket_size, kv::SharedTableWriter::KeepData {});
        else
            maybe_map.emplace(std::move(segment), environment.segment_name, environment.bucket_size);
        kv::BucketMap& map = *maybe_map;
        switch (map.adoption()) {
        case kv::SharedTableWriter::Adoption::formatted: break;
        case kv::SharedTableWriter::Adoption::kept:
            kv::log_line("bucket " + kv::printable(name) + ": data kept: " + std::to_string(map.size()) + (map.size() == 1 ? " key" : " keys"));
            break;
        case kv::SharedTableWriter::Adoption::discarded:
            kv::log_line(kv::LogLevel::warning, "bucket " + kv::printable(name) + ": data discarded: " + map.discarded_why());
            break;
        }
        kv::BucketContext context { map, environment.debug_command_enabled };
        kv::ActiveExpiry active_expiry(io, map);
        active_expiry.poke(); // kept keys may have expiry times
        auto handler = [&](kv::resp::Request& request, kv::ReplySink& reply) {
            kv::run_bucket_command(context, request, reply);
            active_expiry.poke();
        };
        // One role for both sockets: one list of clients (CLIENT LIST, INFO).
        const kv::ServerRole role = bucket_role(map, tcp_port);
        kv::RespServer server(io, std::move(listener), environment.socket_path, handler, environment.server_config, role);
        std::optional<kv::RespServer> tcp_server;
        if (tcp_listener)
            tcp_server.emplace(io, std::move(tcp_listener), environment.tcp_address, handler, environment.server_config, role,
                std::move(password));

        stop_signals.async_wait([&](const boost::system::error_code& error, int) {
            if (error)
                return;
            server.close();
            if (tcp_server)
                tcp_server->close();
            io.stop();
        });

        // Readiness, s6-style: one newline once the segment is ready (the
        // socket was listening before we started); direct readers may trust
        // the segment from now on too.
        map.set_write_deadline(environment.write_deadline_ns); // a kept table's old one is replaced too
        map.publish_alive();
        if (::write(notify.get(), kv::ready_line.data(), kv::ready_line.size()) != static_cast<ssize_t>(kv::ready_line.size()))
            throw kv::SystemError("unable to notify registryd through descriptor", std::to_string(notify.get()), errno);
        notify.reset();

        io.run();
        return 0;
    } catch (const std::exception& error) {
        kv::log_line(kv::LogLevel::error, "bucket " + kv::printable(name) + ": " + error.what());
        if (notify) {
            std::string line = kv::failure_line(error.what());
            [[maybe_unused]] auto written = ::write(notify.get(), line.data(), line.size());
        }
        return 1;
    }
}
