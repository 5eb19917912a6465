// Mapping: the one owner of a memory mapping in this library, as UniqueFd is
// the one owner of a descriptor.
//
// A shared mapping of the first `size` bytes of a descriptor. It is
// move-only and unmaps in its destructor, so no code path pairs mmap and
// munmap by hand: a mapping cannot leak, and none is unmapped twice (a
// moved-from Mapping is empty and unmaps nothing). The descriptor it was made
// from may be closed meanwhile: the mapping keeps the object.
#pragma once

#include <cstddef>
#include <string_view>

namespace kv {

// What the mapping's pages allow: reading only, or reading and writing.
enum class Access { read_only, read_write };

class Mapping {
public:
    // Empty: maps nothing.
    Mapping() = default;

    // Maps the first `size` bytes of `fd`, shared. Throws SystemError
    // "unable to map WHAT: <errno text>", WHAT naming the object ("segment
    // /kv.3f2a.b1.5d0c", say).
    [[nodiscard]] static Mapping map(int fd, std::size_t size, Access access, std::string_view what);
    // The same for a caller to whom a failure is an answer, not an error (a
    // reader: a segment it cannot map is absent). Empty on failure, with
    // errno as mmap left it.
    [[nodiscard]] static Mapping try_map(int fd, std::size_t size, Access access) noexcept;

    Mapping(Mapping&& other) noexcept;
    Mapping& operator=(Mapping&& other) noexcept;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping();

    char* base() const { return base_; }
    std::size_t size() const { return size_; }
    explicit operator bool() const { return base_ != nullptr; }

private:
    Mapping(char* base, std::size_t size) : base_(base), size_(size) {}
    void unmap() noexcept;

    char* base_ = nullptr;
    std::size_t size_ = 0;
};

} // namespace kv
