#include "run_dir.h"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "system_error.h"

namespace kv {

std::string resolve_run_dir(const std::string& flag)
{
    if (!flag.empty())
        return flag;
    if (const char* dir = std::getenv("KV_RUN_DIR"); dir && *dir)
        return dir;
    if (const char* runtime = std::getenv("XDG_RUNTIME_DIR"); runtime && *runtime)
        return std::string(runtime) + "/kv";
    if (::geteuid() == 0)
        return "/run/kv";
    return "/tmp/kv-" + std::to_string(::geteuid());
}

static void make_private_directory(const std::string& path, mode_t mode)
{
    if (::mkdir(path.c_str(), 0700) == -1 && errno != EEXIST)
        throw SystemError("unable to create run directory", path, errno);
    struct stat info;
    check(::lstat(path.c_str(), &info), "unable to inspect run directory", path);
    if (!S_ISDIR(info.st_mode))
        throw std::runtime_error("unable to use run directory " + path + ": not a directory");
    if (info.st_uid != ::geteuid())
        throw std::runtime_error("unable to use run directory " + path + ": owned by uid "
            + std::to_string(info.st_uid) + ", not by us");
    if ((info.st_mode & 0777) != mode)
        check(::chmod(path.c_str(), mode), "unable to set the mode of run directory", path);
}

void prepare_run_dir(const std::string& run_dir, RunDirAccess access)
{
    mode_t mode = access == RunDirAccess::owner_only ? 0700 : 0711;
    make_private_directory(run_dir, mode);
    make_private_directory(run_dir + "/buckets", mode);
    check_socket_path_length(bucket_socket_path(run_dir, ~0ULL));
}

std::string registry_socket_path(const std::string& run_dir) { return run_dir + "/registry.sock"; }

std::string lock_file_path(const std::string& run_dir) { return run_dir + "/registry.lock"; }

std::string bucket_socket_path(const std::string& run_dir, unsigned long long id)
{
    return run_dir + "/buckets/" + std::to_string(id) + ".sock";
}

std::string segment_prefix(const std::string& run_dir)
{
    // FNV-1a over the absolute path: stable across restarts, distinct per dir.
    char* resolved = ::realpath(run_dir.c_str(), nullptr);
    std::string path = resolved ? resolved : run_dir;
    std::free(resolved);
    unsigned long long hash = 14695981039346656037ULL;
    for (unsigned char c : path) {
        hash ^= c;
        hash *= 1099511628211ULL;
    }
    char text[32];
    std::snprintf(text, sizeof text, "/kv.%016llx.", hash);
    return text;
}

std::string segment_name(const std::string& run_dir, int registry_pid, unsigned long long id)
{
    return segment_prefix(run_dir) + std::to_string(registry_pid) + "." + std::to_string(id);
}

void check_socket_path_length(const std::string& path)
{
    if (path.size() >= sizeof(sockaddr_un::sun_path))
        throw std::runtime_error("unable to use socket path " + path + ": longer than "
            + std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes; choose a shorter --run-dir");
}

} // namespace kv
