// kvbench-bucket: starts one bucketd the way registryd does, for a supervisor
// that is not registryd. bench/run.sh runs it under s6-supervise and under
// supervisord, so that their restart latency is measured on the very program
// kv restarts (bucketd), not on a smaller stand-in.
//
// What registryd does before it spawns a bucket (registry.cpp, start_process)
// is done here in the new process, which then execs bucketd: a fresh shared-
// memory segment, a listening socket at a fixed path (the old one's file is
// removed once a connect to it is refused), and the launch environment
// (common/contract/bucket_launch.h). So each restart costs the supervisor
// one more exec than registryd's (this program's, statically linked like
// bucketd); BENCHMARKS.md says so beside the figures.
//
// Configured by environment, since s6-supervise runs ./run without arguments:
//   KV_BENCH_BUCKETD      path of bucketd
//   KV_BENCH_DIR          directory of the socket (bucket.sock)
//   KV_BENCH_NAME         the bucket's name (and its segment's: /kvbench-NAME)
//   KV_BENCH_BUCKET_SIZE  segment size in bytes, as registryd's --bucket-size
//   KV_BENCH_NOTIFY_FD    optional: the descriptor to write readiness to (s6's
//                         notification-fd; bucketd writes "\n" there, s6's own
//                         protocol). Without it, /dev/null.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "bucket_launch.h"
#include "segment_file.h"
#include "socket_file.h"

namespace {

std::string required(const char* variable)
{
    const char* value = std::getenv(variable);
    if (!value || !*value)
        throw std::runtime_error(std::string("missing ") + variable);
    return value;
}

void inherit(int fd)
{
    if (::fcntl(fd, F_SETFD, 0) == -1)
        throw std::runtime_error("unable to pass descriptor " + std::to_string(fd) + " to bucketd");
}

} // namespace

int main()
{
    try {
        const std::string bucketd = required("KV_BENCH_BUCKETD");
        const std::string directory = required("KV_BENCH_DIR");
        const std::string name = required("KV_BENCH_NAME");
        const std::size_t bucket_size = std::stoull(required("KV_BENCH_BUCKET_SIZE"));

        const int directory_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (directory_fd == -1)
            throw std::runtime_error("unable to open " + directory);
        // The previous process's segment and socket file: it is dead (that
        // is why we run), and nobody else uses these names.
        const std::string segment_name = "/kvbench-" + name;
        ::shm_unlink(segment_name.c_str());
        kv::remove_stale_socket(directory_fd, "bucket.sock");

        kv::BucketEnvironment environment;
        environment.instance = "kvbench-" + name;
        environment.segment_name = segment_name;
        environment.segment_fd = kv::create_segment(segment_name).release();
        kv::SocketFile socket = kv::SocketFile::listen(directory_fd, "bucket.sock", directory + "/bucket.sock", 0600);
        environment.socket_path = socket.path();
        environment.listen_fd = socket.take_listener().release();
        environment.bucket_size = bucket_size;
        if (const char* notify = std::getenv("KV_BENCH_NOTIFY_FD"))
            environment.notify_fd = std::stoi(notify);
        else
            environment.notify_fd = ::open("/dev/null", O_WRONLY);
        for (int fd : { environment.segment_fd, environment.listen_fd, environment.notify_fd })
            inherit(fd);
        for (const auto& [variable, value] : kv::encode(environment))
            ::setenv(variable.c_str(), value.c_str(), 1);
        std::string program = "bucketd";
        std::string argument = name;
        char* argv[] = { program.data(), argument.data(), nullptr };
        ::execv(bucketd.c_str(), argv);
        throw std::runtime_error("unable to run " + bucketd);
    } catch (const std::exception& error) {
        std::fprintf(stderr, "kvbench-bucket: %s\n", error.what());
        return 127;
    }
}
