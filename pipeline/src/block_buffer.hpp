#pragma once
// The buffers of a run's two block slots (run_parts.hpp): sized once, before
// the first block, then rewritten by every block.
//
// A std::vector<T> value-initialises its elements: a memset of every byte,
// which also takes every page fault of the buffer at once. On a virtual
// machine a 4 KiB page fault costs several microseconds, and the slots of a
// two-channel run are about 200 MB: 0.4 s of each rank's CPU in a 100,000-
// spectrum `mpirun -np 2` run (perf, docs/PERFORMANCE.md), paid again by every
// rank. This allocator gives the same zeroed elements without the memset:
// large buffers are fresh anonymous mappings (zero pages from the kernel),
// aligned to and advised for transparent huge pages (one fault per 2 MiB);
// small ones come from calloc. Its construct() does not write the elements.
//
// So a BlockBuffer must only be sized up from empty (resize() after a shrink
// would leave the old values where a std::vector writes zeros), and holds
// trivially copyable elements.
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace exospec::pipeline::detail {

template <class T>
class ZeroPageAllocator {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_default_constructible_v<T>);

 public:
  using value_type = T;
  ZeroPageAllocator() = default;
  template <class U>
  ZeroPageAllocator(const ZeroPageAllocator<U>&) noexcept {}  // NOLINT: rebinding is implicit

  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kMapBytes) {
      void* p = std::calloc(n == 0 ? 1 : n, sizeof(T));
      if (p == nullptr) throw std::bad_alloc();
      return static_cast<T*>(p);
    }
    // A mapping one huge page larger than asked, trimmed to start and end on
    // huge-page boundaries.
    const std::size_t size = round_up(bytes);
    void* m = ::mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    const auto base = reinterpret_cast<std::uintptr_t>(m);
    const std::uintptr_t start = (base + kHugePage - 1) & ~(std::uintptr_t{kHugePage} - 1);
    if (start > base) ::munmap(m, start - base);
    if (const std::size_t tail = base + size + kHugePage - (start + size); tail > 0) {
      ::munmap(reinterpret_cast<void*>(start + size), tail);
    }
    void* p = reinterpret_cast<void*>(start);
#ifdef MADV_HUGEPAGE
    ::madvise(p, size, MADV_HUGEPAGE);  // advice only: without it, 4 KiB pages
#endif
    return static_cast<T*>(p);
  }

  void deallocate(T* p, std::size_t n) noexcept {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kMapBytes) {
      std::free(p);
    } else {
      ::munmap(p, round_up(bytes));
    }
  }

  // Elements are left as allocate() made them (zero); others as asked.
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) > 0) ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }

  friend bool operator==(const ZeroPageAllocator&, const ZeroPageAllocator&) noexcept { return true; }

 private:
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;
  static constexpr std::size_t kMapBytes = std::size_t{1} << 20;
  static constexpr std::size_t round_up(std::size_t bytes) noexcept {
    return (bytes + kHugePage - 1) & ~(kHugePage - 1);
  }
};

template <class T>
using BlockBuffer = std::vector<T, ZeroPageAllocator<T>>;

}  // namespace exospec::pipeline::detail
