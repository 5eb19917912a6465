#include "mapping.h"

#include <sys/mman.h>

#include <cerrno>
#include <utility>

#include "system_error.h"

namespace kv {

Mapping Mapping::try_map(int fd, std::size_t size, Access access) noexcept
{
    const int protection = access == Access::read_write ? PROT_READ | PROT_WRITE : PROT_READ;
    void* base = ::mmap(nullptr, size, protection, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return {};
    return Mapping(static_cast<char*>(base), size);
}

Mapping Mapping::map(int fd, std::size_t size, Access access, std::string_view what)
{
    Mapping mapping = try_map(fd, size, access);
    if (!mapping)
        throw SystemError("unable to map", what, errno); // nothing ran since mmap: errno is its
    return mapping;
}

Mapping::Mapping(Mapping&& other) noexcept
    : base_(std::exchange(other.base_, nullptr))
    , size_(std::exchange(other.size_, 0))
{
}

Mapping& Mapping::operator=(Mapping&& other) noexcept
{
    if (this != &other) {
        unmap();
        base_ = std::exchange(other.base_, nullptr);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

Mapping::~Mapping() { unmap(); }

void Mapping::unmap() noexcept
{
    if (base_)
        ::munmap(base_, size_);
    base_ = nullptr;
    size_ = 0;
}

} // namespace kv
