// registryd: the registry daemon. Spawns one bucketd per bucket name,
// watches each through a pidfd, and removes a name the moment its bucket
// exits. Runs in the foreground and logs one line per event to stderr (log.h:
// a time and a level, or journal priorities under systemd); as a Type=notify
// service it tells systemd when it is ready and pings its watchdog
// (service_manager.h).
//
// Exit codes: 0 stopped by SIGTERM, SIGINT or SIGQUIT after stopping every
// bucket; 1 unable to start (run dir, lock, socket); 2 usage; 3 stopped every
// bucket and exited because its run directory (or its lock file there) was
// removed or replaced. SIGHUP, SIGUSR1, SIGUSR2 and SIGALRM are logged and
// change nothing; SIGPIPE is ignored.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <climits>
#include <csignal>
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>

#include "asio.h"
#include "cluster.h"
#include "command_table.h"
#include "log.h"
#include "password_file.h"
#include "peer_credentials.h"
#include "registry.h"
#include "registry_commands.h"
#include "resp_server.h"
#include "run_dir.h"
#include "leftovers.h"
#include "run_dir_lock.h"
#include "service_manager.h"
#include "socket_file.h"
#include "spawn.h"
#include "system_error.h"
#include "tcp_listener.h"
#include "text_server.h"
#include "unique_fd.h"

namespace {

// Where bucketd (or textd) is when --bucketd (--textd) is not given, found
// from where registryd itself is (/proc/self/exe): installed, it is
// <prefix>/libexec/kv/bucketd beside <prefix>/bin/registryd (an internal
// program, not on PATH; the relative path comes from the install rules in
// CMakeLists.txt); in the build tree they are all in bin/, side by side.
std::string default_program_path(const std::string& program)
{
    std::error_code error;
    auto self = std::filesystem::read_symlink("/proc/self/exe", error);
    if (error)
        return program;
    auto installed = (self.parent_path() / KV_LIBEXEC_FROM_BINDIR / program).lexically_normal();
    if (std::filesystem::exists(installed, error))
        return installed.string();
    return (self.parent_path() / program).string();
}

// What the connection commands every socket serves know of the registry.
// It refuses transactions: no CREATE or STOP inside a MULTI ever runs, so a
// block cannot half-apply (README "Protocol"). INFO's registry section is
// registryd's status: who it is, what it holds, and what its buckets did
// since it started (RegistryCounters); `server` is set once the registry's
// RespServer exists, before any client can ask.
kv::ServerRole registry_role(const kv::Registry& registry, const std::string& run_dir, const kv::RespServer* const& server,
    const kv::TextServer* text_server, const std::string& tcp_listen, const kv::Cluster* cluster)
{
    kv::ServerRole role;
    role.tcp_port = kv::address_port(tcp_listen);
    role.name = "registry";
    role.commands = kv::registry_command_infos();
    role.transactions = kv::Transactions::refused;
    role.extra_section = "Registry";
    const auto started = std::chrono::steady_clock::now();
    role.extra_section_lines = [&registry, run_dir, &server, text_server, started, tcp_listen, cluster](std::string& out) {
        auto line = [&out](std::string_view field, const std::string& value) {
            out.append(field).append(":").append(value).append("\r\n");
        };
        const auto& counters = registry.counters();
        const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started);
        line("buckets", std::to_string(registry.size()));
        line("run_dir", kv::printable(run_dir)); // one line, whatever the path holds
        line("kv_version", KV_VERSION);
        line("process_id", std::to_string(::getpid()));
        line("uptime_in_seconds", std::to_string(uptime.count()));
        line("buckets_created", std::to_string(counters.buckets_created));
        line("bucket_exits", std::to_string(counters.exits));
        line("bucket_exits_status_zero", std::to_string(counters.exits_status_zero));
        line("bucket_exits_status_nonzero", std::to_string(counters.exits_status_nonzero));
        line("bucket_exits_signal", std::to_string(counters.exits_signal));
        line("bucket_exits_stopped", std::to_string(counters.exits_stopped));
        line("bucket_exits_before_ready", std::to_string(counters.exits_before_ready));
        line("bucket_restarts", std::to_string(counters.restarts));
        line("buckets_given_up", std::to_string(counters.given_up));
        line("connected_clients", std::to_string(server ? server->client_count() : 0));
        line("history_entries", std::to_string(registry.exit_history().size()));
        line("history_size", std::to_string(registry.exit_history().capacity()));
        // The text server (--text-listen): where it listens (empty: not
        // asked for), its textd's pid (empty while none runs, between a crash
        // and its restart: never -1, which `kill -9 $(...)` would take for
        // every process) and how many times it was restarted.
        line("text_listen", text_server ? text_server->address() : "");
        line("text_server_pid", text_server && text_server->pid() > 0 ? std::to_string(text_server->pid()) : "");
        line("text_server_restarts", std::to_string(text_server ? text_server->restarts() : 0));
        // --listen-tcp: the registry's TCP address as bound (its port when 0
        // was asked); empty: no TCP.
        line("tcp_listen", tcp_listen);
        // Cluster mode (--cluster): this node, its lease and what it knows
        // of the cluster; cluster_state is "" outside a cluster.
        line("cluster_state", cluster ? kv::to_string(cluster->state()) : "");
        line("cluster_node", cluster ? cluster->options().node : "");
        line("cluster_lease", std::to_string(cluster ? cluster->lease() : 0));
        line("cluster_lease_valid_ms", std::to_string(cluster ? cluster->valid_for().count() : 0));
        line("cluster_leases_lost", std::to_string(cluster ? cluster->leases_lost() : 0));
        line("cluster_nodes", std::to_string(cluster ? cluster->nodes().size() : 0));
        line("cluster_names", std::to_string(cluster ? cluster->names().size() : 0));
        line("cluster_last_error", cluster ? kv::printable(cluster->last_error()) : "");
        // --placement, and the CREATEs of new names it sent to other nodes
        // (and those made here because their node could not be reached).
        line("cluster_placement", cluster ? kv::to_string(registry.placement()) : "");
        line("cluster_placements_forwarded", std::to_string(counters.placements_forwarded));
        line("cluster_placements_failed", std::to_string(counters.placements_failed));
    };
    return role;
}

} // namespace

int main(int argc, char** argv)
{
    kv::set_log_program("registryd");

    CLI::App app { "registryd: supervises one bucketd process per bucket name.\n"
                   "Exit codes: 0 stopped cleanly, 1 unable to start, 2 usage, 3 stopped because its run directory "
                   "was removed or replaced." };
    std::string run_dir_flag;
    kv::RegistryOptions options;
    options.bucketd_path = default_program_path("bucketd");
    std::string textd_path = default_program_path("textd");
    std::string text_listen;
    std::string tcp_listen;
    std::string advertise_address;
    std::string password_file;
    long ready_timeout_ms = 5000;
    long stop_grace_ms = 2000;
    int notify_fd = -1;
    app.set_version_flag("--version", "registryd " KV_VERSION, "Print the version and exit");
    std::string log_level_name = "info";
    app.add_option("--run-dir", run_dir_flag, "Run directory (default: $KV_RUN_DIR, $XDG_RUNTIME_DIR/kv, /run/kv for root, /run/user/UID/kv, ~/.kv, /tmp/kv-UID)");
    app.add_option("--bucketd", options.bucketd_path, "bucketd executable (default: <registryd's directory>/" KV_LIBEXEC_FROM_BINDIR "/bucketd if it exists, as installed; else the bucketd beside registryd, as in the build tree)")->capture_default_str();
    app.add_option("--text-listen", text_listen, "Serve the guide's text protocol on this TCP address, HOST:PORT or PORT (HOST 127.0.0.1), through textd, which registryd starts and restarts; local clients are checked as on the Unix sockets, remote ones cannot be");
    app.add_option("--listen-tcp", tcp_listen, "Also serve RESP on this TCP address, HOST:PORT or PORT (HOST 127.0.0.1; PORT 0: any free port), the registry there and each bucket on a free port of the same host; needs --password-file");
    app.add_option("--advertise-address", advertise_address, "With --listen-tcp: the IP address clients and other nodes are told to reach this node's buckets and registry at (CREATE's and LOOKUP's address), for a --listen-tcp on every address (0.0.0.0, [::]), which cluster mode then needs; default: --listen-tcp's host");
    app.add_option("--password-file", password_file, "The password TCP clients must AUTH with (Redis's requirepass): the first line of this file, which must be owned by registryd's user (or root) and have mode 0600 or stricter");
    app.add_option("--textd", textd_path, "textd executable (default: found as bucketd is)")->capture_default_str();
    app.add_option("--max-buckets", options.max_buckets, "Refuse CREATE past this many buckets")->capture_default_str()->check(CLI::Range(1, 1000000));
    app.add_option("--bucket-size", options.bucket_size, "Bytes of shared memory per bucket")->capture_default_str()->check(CLI::Range(std::size_t(1) << 17, std::size_t(1) << 40));
    kv::ServerConfig& server_config = options.server;
    long stall_timeout_ms = server_config.stall_timeout.count();
    app.add_option("--max-connections", server_config.max_connections, "Clients served at once on each socket (registry and every bucket)")->capture_default_str()->check(CLI::Range(1, 1000000));
    app.add_option("--max-bulk-length", server_config.protocol.max_bulk_length, "Longest RESP bulk string (one key, value or name) in bytes")->capture_default_str()->check(CLI::Range(1, 1 << 30));
    app.add_option("--max-array-length", server_config.protocol.max_array_length, "Most arguments in one request")->capture_default_str()->check(CLI::Range(1, 1 << 24));
    app.add_option("--max-inline-length", server_config.protocol.max_inline_length, "Longest inline command or header line in bytes")->capture_default_str()->check(CLI::Range(16, 1 << 30));
    app.add_option("--max-client-buffer", server_config.max_client_buffer, "Bytes one connection may hold (unparsed input plus unread replies) before it is dropped")->capture_default_str()->check(CLI::Range(std::size_t(1024), std::size_t(1) << 40));
    app.add_option("--stall-timeout-ms", stall_timeout_ms, "Drop a client stuck mid-request or not reading its replies for this long")->capture_default_str()->check(CLI::Range(1L, 86400000L));
    app.add_option("--allow-uid", server_config.allowed_uids, "Also serve this uid (repeatable); root and our own uid always are");
    app.add_option("--allow-gid", server_config.allowed_gids, "Also serve members of this gid (repeatable)");
    app.add_option("--ready-timeout-ms", ready_timeout_ms, "Kill a bucket not ready after this long")->capture_default_str()->check(CLI::Range(1L, 3600000L));
    app.add_option("--stop-grace-ms", stop_grace_ms, "SIGKILL a bucket this long after SIGTERM")->capture_default_str()->check(CLI::Range(0L, 3600000L));
    app.add_option("--history-size", options.history_size, "Bucket exits HISTORY keeps (0: none)")->capture_default_str()->check(CLI::Range(std::size_t(0), std::size_t(10000000)));
    std::string restart_name = "temporary";
    long max_seconds = 5;
    long restart_delay_ms = 0;
    long restart_delay_max_ms = 30000;
    kv::SupervisionOptions& supervision = options.supervision;
    app.add_option("--restart", restart_name, "Restart policy of a bucket whose CREATE names none: temporary (never restarted), transient (after a crash or a non-zero exit) or permanent (after any exit but a STOP)")
        ->capture_default_str()
        ->check([](const std::string& text) { return kv::parse_restart_policy(text) ? std::string() : "not a restart policy: " + text; });
    app.add_option("--max-restarts", supervision.max_restarts, "Give a bucket up after more than this many restarts within --max-seconds (OTP's intensity)")->capture_default_str()->check(CLI::Range(std::size_t(0), std::size_t(1000000)));
    app.add_option("--max-seconds", max_seconds, "The window of --max-restarts, in seconds (OTP's period)")->capture_default_str()->check(CLI::Range(1L, 86400L));
    app.add_option("--restart-delay-ms", restart_delay_ms, "Wait this long before a restart, doubled for each earlier restart within --max-seconds")->capture_default_str()->check(CLI::Range(0L, 3600000L));
    app.add_option("--restart-delay-max-ms", restart_delay_max_ms, "The longest a doubled restart delay grows")->capture_default_str()->check(CLI::Range(0L, 3600000L));
    std::string cluster_urls;
    kv::ClusterOptions cluster_options;
    long lease_ttl_s = 10;
    app.add_option("--cluster", cluster_urls, "Join the kv cluster kept in etcd at these endpoints (http://HOST:PORT[,...]): bucket names are unique across every node");
    app.add_option("--node", cluster_options.node, "This node's name in the cluster (letters, digits, '.', '_', '-'; unique among live nodes); needed with --cluster")
        ->check([](const std::string& text) {
            return !text.empty() && text.size() <= 64 && text.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == std::string::npos
                ? std::string()
                : "not a node name (1 to 64 letters, digits, '.', '_', '-'): " + text;
        });
    app.add_option("--cluster-prefix", cluster_options.prefix, "Where in etcd the cluster's keys are (several clusters can share one etcd)")->capture_default_str();
    std::string placement_name = "local";
    app.add_option("--placement", placement_name, "Where a CREATE of a new name starts its bucket: local (on the node asked) or hash (on the live node rendezvous hashing of the name picks, the CREATE forwarded there; needs --listen-tcp)")
        ->capture_default_str()
        ->check([](const std::string& text) { return kv::parse_placement(text) ? std::string() : "not a placement (local or hash): " + text; });
    app.add_option("--lease-ttl", lease_ttl_s, "Seconds the cluster keeps this node's names after it stops answering (its etcd lease's TTL)")->capture_default_str()->check(CLI::Range(2L, 3600L));
    app.add_flag("--enable-debug-command", options.debug_command_enabled, "Let buckets accept DEBUG SEGFAULT / DEBUG EXIT (for tests)");
    app.add_option("--notify-fd", notify_fd, "Write a newline to this descriptor once the socket is listening");
    app.add_option("--log-level", log_level_name, "Least severe level logged, by registryd and its buckets: error, warning, notice, info or debug")
        ->capture_default_str()
        ->check([](const std::string& text) { return kv::parse_log_level(text) ? std::string() : "not a log level: " + text; });
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& help) {
        return app.exit(help);
    } catch (const CLI::CallForVersion& version) {
        return app.exit(version);
    } catch (const CLI::ParseError& error) {
        std::cerr << "registryd: " << error.what() << " (see registryd --help)\n";
        return 2;
    }
    if (!cluster_urls.empty() && cluster_options.node.empty()) {
        std::cerr << "registryd: --cluster needs --node NAME (see registryd --help)\n";
        return 2;
    }
    if (cluster_urls.empty() && !cluster_options.node.empty()) {
        std::cerr << "registryd: --node needs --cluster URLS (see registryd --help)\n";
        return 2;
    }
    if (!cluster_urls.empty()) {
        std::string why;
        cluster_options.endpoints = kv::parse_etcd_endpoints(cluster_urls, why);
        if (cluster_options.endpoints.empty()) {
            std::cerr << "registryd: --cluster: " << why << " (see registryd --help)\n";
            return 2;
        }
        cluster_options.lease_ttl = std::chrono::seconds(lease_ttl_s);
    }
    options.placement = *kv::parse_placement(placement_name);
    if (options.placement == kv::Placement::hash && (cluster_urls.empty() || tcp_listen.empty())) {
        std::cerr << "registryd: --placement hash needs --cluster and --listen-tcp: a CREATE is forwarded to another node's registry over TCP (see registryd --help)\n";
        return 2;
    }
    if (!tcp_listen.empty() && password_file.empty()) {
        std::cerr << "registryd: --listen-tcp needs --password-file: a TCP port is reachable by anyone, so its clients must AUTH (see registryd --help)\n";
        return 2;
    }
    if (!advertise_address.empty()) {
        std::string why;
        options.tcp_advertised_host = kv::advertised_host(advertise_address, why);
        if (tcp_listen.empty() || options.tcp_advertised_host.empty()) {
            std::cerr << "registryd: --advertise-address: " << (tcp_listen.empty() ? "needs --listen-tcp" : why) << " (see registryd --help)\n";
            return 2;
        }
    }
    kv::set_log_level(*kv::parse_log_level(log_level_name));
    options.ready_timeout = std::chrono::milliseconds(ready_timeout_ms);
    options.stop_grace = std::chrono::milliseconds(stop_grace_ms);
    supervision.default_policy = *kv::parse_restart_policy(restart_name);
    supervision.max_seconds = std::chrono::seconds(max_seconds);
    supervision.restart_delay = std::chrono::milliseconds(restart_delay_ms);
    supervision.restart_delay_max = std::chrono::milliseconds(restart_delay_max_ms);
    server_config.stall_timeout = std::chrono::milliseconds(stall_timeout_ms);

    // Reaping is ours alone, through pidfds: SIGCHLD must not be ignored
    // (it may be inherited that way), and a client hanging up must not kill us.
    std::signal(SIGCHLD, SIG_DFL);
    std::signal(SIGPIPE, SIG_IGN);
    ::umask(077);
    // Each live bucket holds two descriptors here (its pidfd and its
    // segment): let --max-buckets be reachable, and if the hard limit still
    // does not let it be, say so now rather than leave it to the CREATE that
    // runs out. At least 64 are kept for sockets, clients and logs (with
    // many clients, fewer buckets fit than the warning's "at most").
    rlimit files {};
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0) {
        if (files.rlim_cur < files.rlim_max) {
            files.rlim_cur = files.rlim_max;
            ::setrlimit(RLIMIT_NOFILE, &files);
            ::getrlimit(RLIMIT_NOFILE, &files);
        }
        constexpr rlim_t per_bucket = 2, kept = 64;
        if (files.rlim_cur != RLIM_INFINITY && options.max_buckets * per_bucket + kept > files.rlim_cur) {
            const rlim_t room = files.rlim_cur > kept ? (files.rlim_cur - kept) / per_bucket : 0;
            kv::log_line(kv::LogLevel::warning, "--max-buckets " + std::to_string(options.max_buckets)
                    + " cannot be reached: the descriptor limit (" + std::to_string(files.rlim_cur)
                    + ") leaves room for at most " + std::to_string(room)
                    + " live buckets, two descriptors each; past that, CREATE fails");
        }
    }

    // The signals registryd handles are blocked until their handlers are in
    // place, so one that arrives while it starts is handled once the loop
    // runs (a stop then stops cleanly) instead of killing it half-started.
    sigset_t handled;
    sigemptyset(&handled);
    for (int signal : { SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM })
        sigaddset(&handled, signal);
    ::sigprocmask(SIG_BLOCK, &handled, nullptr);

    try {
        // One thread, and nothing touches the loop from another: no locks.
        kv::asio::io_context io(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE);
        // Signals arrive as events in the loop. Every signal a user or a
        // terminal commonly sends is handled, so none ends registryd without
        // its cleanup: three stop it, the others are logged and change nothing.
        kv::asio::signal_set stop_signals(io, SIGTERM, SIGINT, SIGQUIT);
        kv::asio::signal_set harmless_signals(io, SIGHUP, SIGUSR1, SIGUSR2);
        harmless_signals.add(SIGALRM);
        ::sigprocmask(SIG_UNBLOCK, &handled, nullptr);
        kv::ServiceManager service_manager(io);
        options.on_size_change = [&service_manager](std::size_t buckets) { service_manager.buckets_changed(buckets); };

        const std::string run_dir_path = kv::resolve_run_dir(run_dir_flag);
        kv::RunDir dir = kv::RunDir::prepare(run_dir_path);
        kv::RunDirLock lock(dir);
        dir.set_access(server_config.admits_others() ? kv::RunDirAccess::traversable_by_others : kv::RunDirAccess::owner_only);
        if (const auto& predecessor = lock.predecessor()) {
            auto removed = kv::remove_leftovers(dir, predecessor->instance);
            if (removed.total() > 0)
                kv::log_line(kv::LogLevel::warning, "registryd pid " + std::to_string(predecessor->pid) + " (instance " + predecessor->instance
                    + ") died without cleaning up: killed " + std::to_string(removed.processes) + " of its processes, removed "
                    + std::to_string(removed.segments) + " segments and " + std::to_string(removed.sockets) + " sockets");
        }
        // A registry socket of ours that nobody answers on is a dead
        // predecessor's. One that answers belongs to a registryd whose lock
        // file was removed under it: that one must not be harmed.
        if (kv::remove_stale_socket(dir.fd(), kv::registry_socket_name) == kv::StaleSocket::in_use)
            throw std::runtime_error("unable to start on run directory " + run_dir_path + ": a registryd still serves "
                + kv::registry_socket_path(run_dir_path) + " (its lock file was removed); stop it first");
        const auto dead = kv::remove_dead_instances();
        if (dead.total() > 0)
            kv::log_line(kv::LogLevel::warning, "removed what dead registryd instances of ours left: killed " + std::to_string(dead.processes)
                + " processes, removed " + std::to_string(dead.segments) + " segments");
        if (::access(options.bucketd_path.c_str(), X_OK) == -1)
            throw kv::SystemError("unable to use bucketd executable", options.bucketd_path, errno);
        // The text server's port is bound now, so a port in use stops
        // registryd here (exit 1) rather than a textd later.
        std::optional<kv::TcpListener> text_listener;
        if (!text_listen.empty()) {
            if (::access(textd_path.c_str(), X_OK) == -1)
                throw kv::SystemError("unable to use textd executable", textd_path, errno);
            text_listener = kv::listen_tcp(text_listen);
        }
        // --listen-tcp: the password is read, and the registry's port bound,
        // now, so a bad file or a port in use stops registryd here (exit 1).
        // Buckets read the password from a sealed memfd of ours, never from
        // their argv or environment.
        std::optional<kv::TcpListener> registry_tcp;
        kv::UniqueFd password_fd;
        std::string password;
        if (!password_file.empty())
            password = kv::read_password_file(password_file);
        if (!tcp_listen.empty()) {
            registry_tcp = kv::listen_tcp(tcp_listen);
            // Other nodes are told each bucket's address: one on every
            // address of this machine names none they could reach.
            if (!cluster_urls.empty() && options.tcp_advertised_host.empty() && kv::binds_every_address(registry_tcp->address)) {
                std::cerr << "registryd: --listen-tcp " << tcp_listen << " listens on every address, which other nodes cannot connect "
                          << "to: give --advertise-address, the address they reach this node at (see registryd --help)\n";
                return 2;
            }
            password_fd = kv::password_descriptor(password);
            options.tcp_host = kv::address_host(registry_tcp->address);
            options.password_fd = password_fd.get();
            options.password = password; // --placement hash: AUTH at the other nodes' registries (one password per cluster)
        }
        // What this instance will make is recorded before any of it exists,
        // so a successor can find all of it whatever moment we die at.
        options.instance = kv::new_instance_id();
        options.names_segment = kv::new_segment_name(options.instance, "names");
        lock.publish(kv::InstanceRecord { ::getpid(), options.instance, options.names_segment });

        kv::prepare_spawning(); // before any client or bucket: its descriptor numbers stay small
        // Cluster mode: the node joins (a lease, its node key, the copy of
        // every name) before it serves anyone, so no CREATE ever runs
        // unclaimed. The registry is told of the cluster's events from then on.
        std::optional<kv::Cluster> cluster;
        kv::Registry* registry_for_cluster = nullptr;
        if (!cluster_options.endpoints.empty()) {
            cluster_options.instance = options.instance;
            // where other nodes reach this registry
            cluster_options.address = !registry_tcp                  ? ""
                : options.tcp_advertised_host.empty() ? registry_tcp->address
                                                      : kv::with_host(options.tcp_advertised_host, registry_tcp->address);
            cluster.emplace(io, cluster_options,
                kv::Cluster::Hooks {
                    [&registry_for_cluster] {
                        if (registry_for_cluster)
                            registry_for_cluster->reclaim_all();
                    },
                    [&registry_for_cluster](const std::string& name) {
                        if (registry_for_cluster)
                            registry_for_cluster->cluster_name_changed(name);
                    },
                    [&registry_for_cluster] {
                        if (registry_for_cluster)
                            registry_for_cluster->extend_fences();
                    } });
            std::optional<std::string> joined;
            cluster->join([&joined](const std::string& error) { joined = error; });
            while (!joined && io.run_one() > 0) {
            }
            if (!joined || !joined->empty())
                throw std::runtime_error(joined ? *joined : "unable to join the cluster: the loop stopped");
            options.cluster = &*cluster;
        }
        kv::Registry registry(io, dir, options);
        registry_for_cluster = &registry;
        std::optional<kv::TextServer> text_server;
        if (text_listener)
            text_server.emplace(io, std::move(*text_listener),
                kv::TextServerOptions { textd_path, run_dir_path, options.instance, server_config, *kv::parse_log_level(log_level_name),
                    supervision, options.stop_grace, password });
        kv::SocketFile registry_socket = kv::SocketFile::listen(dir.fd(), kv::registry_socket_name,
            kv::registry_socket_path(run_dir_path), server_config.admits_others() ? 0666 : 0600);
        const kv::RespServer* registry_server = nullptr;
        auto registry_handler = [&registry](kv::resp::Request& request, kv::ReplySink& reply) {
            // Who stopped a bucket is worth knowing afterwards.
            if (request.size() == 2 && kv::same_word(request[0], "STOP"))
                kv::log_line(kv::LogLevel::notice, "STOP " + kv::printable(request[1]) + " asked by a client ("
                    + kv::describe_peer(reply.session().fd()) + ")");
            kv::run_registry_command(registry, request, reply.defer());
        };
        const std::string tcp_address = registry_tcp ? registry_tcp->address : "";
        // One role for both sockets: one list of clients (CLIENT LIST, INFO).
        const kv::ServerRole role = registry_role(registry, run_dir_path, registry_server, text_server ? &*text_server : nullptr,
            tcp_address, cluster ? &*cluster : nullptr);
        kv::RespServer server(io, registry_socket.take_listener(), registry_socket.path(), registry_handler, server_config, role);
        registry_server = &server;
        std::optional<kv::RespServer> tcp_server; // --listen-tcp: the same registry, to clients that AUTH
        if (registry_tcp)
            tcp_server.emplace(io, std::move(registry_tcp->fd), tcp_address, registry_handler, server_config, role, password);

        int exit_code = 0;
        bool stopping = false;
        auto stop = [&](const std::string& why) {
            if (std::exchange(stopping, true))
                return;
            service_manager.stopping(why);
            kv::log_line(kv::LogLevel::notice, why + ", stopping " + std::to_string(registry.size()) + " buckets");
            server.close();
            if (tcp_server)
                tcp_server->close();
            registry_socket.remove();
            // The text server first: then no client of it can ask for a
            // bucket while the buckets stop.
            // Last, the cluster: the lease is revoked, so every name left is
            // free at once rather than after the TTL.
            auto stop_buckets = [&registry, &io, &cluster] {
                registry.shutdown([&io, &cluster] {
                    if (cluster)
                        cluster->leave([&io] { io.stop(); });
                    else
                        io.stop();
                });
            };
            if (text_server)
                text_server->stop(stop_buckets);
            else
                stop_buckets();
        };

        stop_signals.async_wait([&](const boost::system::error_code& error, int signal) {
            if (!error)
                stop(std::string("received ") + kv::signal_name(signal));
        });
        std::function<void()> watch_harmless_signals = [&] {
            harmless_signals.async_wait([&](const boost::system::error_code& error, int signal) {
                if (error)
                    return;
                kv::log_line(kv::LogLevel::notice, "received " + kv::signal_name(signal) + "; ignored (SIGTERM, SIGINT or SIGQUIT stop registryd)");
                watch_harmless_signals();
            });
        };
        watch_harmless_signals();

        // A run dir can be removed under us (logind clears /run/user/<uid> at
        // logout, tmp cleaners clear /tmp), and then a second registryd could
        // start on the same path. Look once a second; stop cleanly if so.
        kv::asio::steady_timer run_dir_watch(io);
        std::function<void()> watch_run_dir = [&] {
            run_dir_watch.expires_after(std::chrono::seconds(1));
            run_dir_watch.async_wait([&](const boost::system::error_code& error) {
                if (error || stopping)
                    return;
                auto why = dir.lost();
                if (why)
                    why = "run directory " + run_dir_path + " " + *why;
                else
                    why = lock.lost();
                if (!why) {
                    watch_run_dir();
                    return;
                }
                exit_code = 3;
                stop(*why);
            });
        };
        watch_run_dir();

        kv::log_line(kv::LogLevel::notice, "listening on " + registry_socket.path());
        if (tcp_server)
            kv::log_line(kv::LogLevel::notice, "listening on TCP " + tcp_address + " (clients must AUTH; buckets on " + options.tcp_host + ")");
        if (text_server) {
            kv::log_line(kv::LogLevel::notice, "text server listening on " + text_server->address());
            text_server->start();
        }
        service_manager.ready(registry.size()); // listen(2) was called: a connect succeeds from now on
        if (notify_fd >= 0) {
            kv::UniqueFd notify(notify_fd);
            [[maybe_unused]] auto written = ::write(notify.get(), "\n", 1);
        }
        io.run();
        registry_socket.remove();
        if (exit_code == 0)
            lock.clear(); // nothing left behind, so nothing for a successor to sweep
        kv::log_line(kv::LogLevel::notice, "stopped");
        return exit_code;
    } catch (const std::exception& error) {
        kv::log_line(kv::LogLevel::error, error.what());
        return 1;
    }
}
