// A counting wrapper around c10's CPU allocator (suite/tensor_memory.py explains the method).
// Every tensor storage ATen makes on the CPU comes from c10::GetCPUAllocator(); this allocator
// takes its place, hands each request to the allocator it replaced, and keeps the exact bytes it
// holds (current, the peak since the last reset, and the largest rise within a step).
// Blocks it did not allocate (made before it was installed) are freed by the replaced allocator's
// deleter and not subtracted: the count covers exactly the blocks allocated through it.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace {

struct Counts {
  int64_t current = 0;       // bytes held now by blocks of this allocator
  int64_t peak = 0;          // highest `current` since reset()
  int64_t window_base = 0;   // `current` when the step began (mark_step / reset)
  int64_t window_peak = 0;   // highest `current` since then
  int64_t step_excess = 0;   // largest (window_peak - window_base) over the closed steps
  int64_t allocations = 0;   // blocks allocated since installation (a test's handle on the cost)
};

std::mutex g_mutex;
Counts g_counts;
std::unordered_map<void*, int64_t>* g_sizes = new std::unordered_map<void*, int64_t>();  // never freed:
                                                  // storages may be freed during interpreter shutdown
at::DeleterFnPtr g_base_deleter = nullptr;

void counted_delete(void* ptr) {
  if (ptr == nullptr) return;
  {
    std::lock_guard<std::mutex> guard(g_mutex);
    auto it = g_sizes->find(ptr);
    if (it != g_sizes->end()) {
      g_counts.current -= it->second;
      g_sizes->erase(it);
    }
  }
  g_base_deleter(ptr);
}

struct CountingCPUAllocator final : at::Allocator {
  explicit CountingCPUAllocator(at::Allocator* base) : base_(base) {}

  at::DataPtr allocate(size_t nbytes) override {
    at::DataPtr inner = base_->allocate(nbytes);
    void* ptr = inner.get();
    if (ptr == nullptr) return inner;  // 0 bytes: nothing held
    // The replaced allocator's blocks are plain (context == data, freed by its raw deleter): checked
    // at installation, so the block can be handed on with our deleter in place of its own.
    TORCH_INTERNAL_ASSERT(inner.get_context() == ptr && inner.get_deleter() == g_base_deleter);
    inner.release_context();
    const int64_t n = static_cast<int64_t>(nbytes);
    {
      std::lock_guard<std::mutex> guard(g_mutex);
      (*g_sizes)[ptr] = n;
      Counts& c = g_counts;
      c.current += n;
      c.allocations += 1;
      c.peak = std::max(c.peak, c.current);
      c.window_peak = std::max(c.window_peak, c.current);
    }
    return {ptr, ptr, &counted_delete, at::Device(at::DeviceType::CPU)};
  }

  at::DeleterFnPtr raw_deleter() const override { return &counted_delete; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  at::Allocator* base_;
};

CountingCPUAllocator* g_allocator = nullptr;  // lives as long as the process: storages keep pointers to it

// Installs the counting allocator over the current CPU allocator (once). Returns "" on success,
// else why it cannot count.
std::string install() {
  std::lock_guard<std::mutex> guard(g_mutex);
  if (g_allocator != nullptr) {
    return c10::GetCPUAllocator() == g_allocator ? "" : "another CPU allocator replaced the counting one";
  }
  at::Allocator* base = c10::GetCPUAllocator();
  at::DeleterFnPtr deleter = base->raw_deleter();
  if (deleter == nullptr) return "the CPU allocator in place has no raw deleter (not c10's default)";
  at::DataPtr probe = base->allocate(64);
  const bool plain = probe.get() == probe.get_context() && probe.get_deleter() == deleter;
  probe.clear();
  if (!plain) return "the CPU allocator in place makes blocks with a context of their own (not c10's default)";
  g_base_deleter = deleter;
  g_allocator = new CountingCPUAllocator(base);
  c10::SetCPUAllocator(g_allocator, /*priority=*/0);  // c10's default is registered at priority 0
  if (c10::GetCPUAllocator() != g_allocator) return "a CPU allocator of higher priority is in place";
  return "";
}

bool active() { return g_allocator != nullptr && c10::GetCPUAllocator() == g_allocator; }

void reset() {
  std::lock_guard<std::mutex> guard(g_mutex);
  Counts& c = g_counts;
  c.peak = c.window_base = c.window_peak = c.current;
  c.step_excess = 0;
}

void mark_step() {
  std::lock_guard<std::mutex> guard(g_mutex);
  Counts& c = g_counts;
  c.step_excess = std::max(c.step_excess, c.window_peak - c.window_base);
  c.window_base = c.window_peak = c.current;
}

// (current, peak, step excess including the open step, allocations)
std::tuple<int64_t, int64_t, int64_t, int64_t> read_counts() {
  std::lock_guard<std::mutex> guard(g_mutex);
  const Counts& c = g_counts;
  return {c.current, c.peak, std::max(c.step_excess, c.window_peak - c.window_base), c.allocations};
}

// Bytes of the block starting at `address` if this allocator made it and holds it, else -1.
int64_t block_bytes(int64_t address) {
  std::lock_guard<std::mutex> guard(g_mutex);
  auto it = g_sizes->find(reinterpret_cast<void*>(address));
  return it == g_sizes->end() ? -1 : it->second;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("install", &install);
  m.def("active", &active);
  m.def("reset", &reset);
  m.def("mark_step", &mark_step);
  m.def("read", &read_counts);
  m.def("block_bytes", &block_bytes);
}
