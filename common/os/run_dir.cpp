#include "run_dir.h"

#include <fcntl.h>
#include <sys/random.h>
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
    const uid_t uid = ::geteuid();
    if (uid == 0)
        return "/run/kv";
    // Places no other user can create first: logind's runtime directory
    // (also when XDG_RUNTIME_DIR is not set, as over ssh or in cron), then
    // the home directory. /tmp comes last: anyone can make /tmp/kv-<uid>
    // before us, and then it is refused, never used.
    auto own_directory = [uid](const std::string& path) {
        struct stat info;
        return ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode) && info.st_uid == uid;
    };
    if (std::string runtime = "/run/user/" + std::to_string(uid); own_directory(runtime))
        return runtime + "/kv";
    if (const char* home = std::getenv("HOME"); home && *home == '/' && own_directory(home))
        return std::string(home) + "/.kv";
    return "/tmp/kv-" + std::to_string(uid);
}

std::string registry_socket_path(const std::string& run_dir) { return run_dir + "/" + registry_socket_name; }

std::string bucket_socket_name(const std::string& instance, unsigned long long id)
{
    return std::to_string(id) + "." + instance + ".sock";
}

namespace {

std::runtime_error unusable(const std::string& path, const std::string& why)
{
    return std::runtime_error("unable to use run directory " + path + ": " + why);
}

// Opens `name` (relative to `at`) as a directory without following a final
// symbolic link, O_PATH so that a directory we may only traverse can be used.
UniqueFd open_directory(int at, const std::string& name, const std::string& shown)
{
    int fd = ::openat(at, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1) {
        if (errno == ENOTDIR || errno == ELOOP)
            throw unusable(shown, "not a directory (a symbolic link or a file is in its place)");
        throw SystemError("unable to open run directory", shown, errno);
    }
    return UniqueFd(fd);
}

struct stat status_of(int fd, const std::string& shown)
{
    struct stat info;
    check(::fstat(fd, &info), "unable to inspect run directory", shown);
    return info;
}

// registryd's own directory must be ours.
void check_owner(const struct stat& info, const std::string& shown)
{
    if (info.st_uid != ::geteuid())
        throw unusable(shown, "owned by uid " + std::to_string(info.st_uid) + ", not by us (uid "
                + std::to_string(::geteuid()) + "); another user may have made it: choose another with --run-dir or KV_RUN_DIR");
}

// Through /proc/self/fd, since an O_PATH descriptor cannot be fchmod'ed directly.
void set_mode(int fd, const struct stat& info, mode_t mode, const std::string& shown)
{
    if ((info.st_mode & 07777) != mode) {
        std::string self = "/proc/self/fd/" + std::to_string(fd);
        check(::chmod(self.c_str(), mode), "unable to set the mode of run directory", shown);
    }
}

} // namespace

RunDir::RunDir(std::string path, UniqueFd fd, uid_t owner, dev_t device, ino_t inode)
    : path_(std::move(path))
    , fd_(std::move(fd))
    , owner_(owner)
    , device_(device)
    , inode_(inode)
{
}

RunDir RunDir::prepare(const std::string& path)
{
    if (::mkdir(path.c_str(), 0700) == -1 && errno != EEXIST)
        throw SystemError("unable to create run directory", path, errno);
    UniqueFd fd = open_directory(AT_FDCWD, path, path);
    struct stat info = status_of(fd.get(), path);
    check_owner(info, path);
    RunDir dir(path, std::move(fd), info.st_uid, info.st_dev, info.st_ino);

    const std::string buckets = path + "/" + buckets_directory_name;
    if (::mkdirat(dir.fd(), buckets_directory_name, 0700) == -1 && errno != EEXIST)
        throw SystemError("unable to create run directory", buckets, errno);
    dir.buckets_fd_ = open_directory(dir.fd(), buckets_directory_name, buckets);
    check_owner(status_of(dir.buckets_fd(), buckets), buckets);
    check_socket_path_length(buckets + "/" + bucket_socket_name(std::string(16, 'f'), ~0ULL));
    return dir;
}

void RunDir::set_access(RunDirAccess access)
{
    const mode_t mode = access == RunDirAccess::owner_only ? 0700 : 0711;
    set_mode(fd(), status_of(fd(), path_), mode, path_);
    const std::string buckets = path_ + "/" + buckets_directory_name;
    set_mode(buckets_fd(), status_of(buckets_fd(), buckets), mode, buckets);
}

RunDir RunDir::open_trusted(const std::string& path)
{
    UniqueFd fd = open_directory(AT_FDCWD, path, path);
    struct stat info = status_of(fd.get(), path);
    if (info.st_uid != ::geteuid() && info.st_uid != 0)
        throw unusable(path, "owned by uid " + std::to_string(info.st_uid) + ", neither by us (uid "
                + std::to_string(::geteuid()) + ") nor by root; another user may have made it");
    if (info.st_mode & 022)
        throw unusable(path, "writable by other users (mode " + [&] {
            char text[8];
            std::snprintf(text, sizeof text, "%04o", info.st_mode & 07777);
            return std::string(text);
        }() + ")");
    return RunDir(path, std::move(fd), info.st_uid, info.st_dev, info.st_ino);
}

std::optional<std::string> RunDir::lost() const
{
    struct stat now;
    if (::stat(path_.c_str(), &now) == -1)
        return "was removed";
    if (now.st_dev != device_ || now.st_ino != inode_)
        return "was replaced by another directory";
    struct stat mine;
    if (::fstat(fd_.get(), &mine) == -1 || mine.st_nlink == 0)
        return "was removed"; // and something else was made at its path
    return std::nullopt;
}

std::string new_instance_id()
{
    unsigned long long bits = 0;
    // getrandom never returns short for 8 bytes once the pool is ready; it
    // blocks until it is (early boot only).
    if (::getrandom(&bits, sizeof bits, 0) != static_cast<ssize_t>(sizeof bits))
        throw SystemError("unable to read", "random bytes (getrandom)", errno);
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", bits);
    return text;
}

std::string segment_prefix(const std::string& instance) { return "/kv." + instance + "."; }

std::string new_segment_name(const std::string& instance, const std::string& role)
{
    return segment_prefix(instance) + role + "." + new_instance_id();
}

void check_socket_path_length(const std::string& path)
{
    if (path.size() >= sizeof(sockaddr_un::sun_path))
        throw std::runtime_error("unable to use socket path " + path + ": longer than "
            + std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes; choose a shorter --run-dir");
}

} // namespace kv
