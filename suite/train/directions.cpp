// Random directions for forward gradients (suite/train/directions.py explains the choice): the
// torch bindings of philox.h, on the widest instruction set the CPU has (AVX-512, AVX2, portable
// C++), chosen when the library loads; every set draws the same words (tests/test_directions.py).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/utils/pybind.h>

#include <string>
#include <vector>

#include "philox.h"

namespace {

constexpr int64_t kGrain = 1 << 12;  // blocks per task

using Fill32 = void (*)(float*, int64_t, uint64_t, int64_t, float, int64_t, int64_t);
using Fill64 = void (*)(double*, int64_t, uint64_t, int64_t, float, int64_t, int64_t);
struct Isa {
  const char* name;
  bool (*supported)();
  Fill32 gaussian32, rademacher32;
  Fill64 gaussian64, rademacher64;
};

bool always() { return true; }
bool has_avx2() { return __builtin_cpu_supports("avx2"); }
bool has_avx512() { return __builtin_cpu_supports("avx512f"); }

#define PHILOX_ISA(NAME, NS, SUPPORTED)                                                                          \
  Isa{NAME, SUPPORTED, philox::NS::gaussian<float>, philox::NS::rademacher<float>, philox::NS::gaussian<double>, \
      philox::NS::rademacher<double>}
const Isa kIsas[] = {PHILOX_ISA("avx512", avx512, has_avx512), PHILOX_ISA("avx2", avx2, has_avx2),
                     PHILOX_ISA("portable", portable, always)};  // widest first

const Isa* best() {
  __builtin_cpu_init();  // runs before libgcc's own constructor may have
  for (const Isa& isa : kIsas)
    if (isa.supported()) return &isa;
  return &kIsas[2];
}
const Isa* current = best();

template <typename F, typename scalar_t>
void run(F fn, scalar_t* out, int64_t n, uint64_t key, int64_t stream, float scale) {
  const int64_t groups = ((n + 3) / 4 + philox::kBatch - 1) / philox::kBatch;
  at::parallel_for(0, groups, std::max<int64_t>(1, kGrain / philox::kBatch), [&](int64_t begin, int64_t end) {
    fn(out, n, key, stream, scale, begin, end);
  });
}

void check(const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), "out must be a contiguous CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "out must be float32 or float64");
}

// out = scale * N(0, 1) draws of (key, stream), element by element.
at::Tensor gaussian(at::Tensor out, uint64_t key, int64_t stream, double scale) {
  check(out);
  if (out.scalar_type() == at::kFloat)
    run(current->gaussian32, out.data_ptr<float>(), out.numel(), key, stream, float(scale));
  else
    run(current->gaussian64, out.data_ptr<double>(), out.numel(), key, stream, float(scale));
  return out;
}

// out = scale * (+-1 with probability 1/2) draws of (key, stream).
at::Tensor rademacher(at::Tensor out, uint64_t key, int64_t stream, double scale) {
  check(out);
  if (out.scalar_type() == at::kFloat)
    run(current->rademacher32, out.data_ptr<float>(), out.numel(), key, stream, float(scale));
  else
    run(current->rademacher64, out.data_ptr<double>(), out.numel(), key, stream, float(scale));
  return out;
}

// The raw Philox4x32-10 block, for the known-answer test (Random123's kat_vectors).
std::vector<uint32_t> philox4x32(std::vector<uint32_t> c, std::vector<uint32_t> k) {
  TORCH_CHECK(c.size() == 4 && k.size() == 2, "counter: 4 words, key: 2 words");
  philox::block(c[0], c[1], c[2], c[3], k[0], k[1]);
  return c;
}

// The instruction sets this CPU runs, widest first; the one in use; and a switch for the tests.
std::vector<std::string> isas() {
  std::vector<std::string> names;
  for (const Isa& isa : kIsas)
    if (isa.supported()) names.emplace_back(isa.name);
  return names;
}

std::string isa() { return current->name; }

std::string use_isa(const std::string& name) {  // returns the one it replaces
  for (const Isa& isa : kIsas) {
    if (name != isa.name) continue;
    TORCH_CHECK(isa.supported(), "this CPU does not run ", name);
    const std::string before = current->name;
    current = &isa;
    return before;
  }
  TORCH_CHECK(false, "unknown instruction set ", name, " (avx512, avx2 or portable)");
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gaussian", &gaussian);
  m.def("rademacher", &rademacher);
  m.def("philox4x32", &philox4x32);
  m.def("isas", &isas);
  m.def("isa", &isa);
  m.def("use_isa", &use_isa);
}
