// Random directions for forward gradients (suite/train/directions.py explains the choice).
// Counter-based: element e of stream s under key K is a pure function of (K, s, e), computed from
// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11),
// so a direction is drawn on all of torch's threads, the same on any thread count, and can be
// drawn again from its key instead of being kept.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/utils/pybind.h>

#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // Philox4x32 multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key schedule (Weyl) constants
constexpr int64_t kBatch = 16;                               // blocks computed together (vectorized)
constexpr int64_t kGrain = 1 << 12;                          // blocks per task

// Philox4x32-10 of counter (c0..c3) under key (k0, k1), in place.
inline void philox(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    if (r) { k0 += kW0; k1 += kW1; }
    const uint64_t p0 = uint64_t(kM0) * c0, p1 = uint64_t(kM1) * c2;
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0), hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
}

// The 4 words of blocks first..first + kBatch - 1 of stream s under key, block-major (w[j][i]:
// word i of block first + j, i.e. element 4 j + i of the group).
struct Words { uint32_t w[kBatch][4]; };

inline void blocks(Words& out, int64_t first, int64_t stream, uint64_t key) {
  const uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  const uint32_t s0 = uint32_t(stream), s1 = uint32_t(uint64_t(stream) >> 32);
#pragma omp simd
  for (int64_t j = 0; j < kBatch; ++j) {  // one block per lane
    const uint64_t b = uint64_t(first + j);
    uint32_t c0 = uint32_t(b), c1 = uint32_t(b >> 32), c2 = s0, c3 = s1;
    philox(c0, c1, c2, c3, k0, k1);
    out.w[j][0] = c0;
    out.w[j][1] = c1;
    out.w[j][2] = c2;
    out.w[j][3] = c3;
  }
}

// Element e of the group: word e % 4 of block e / 4.
inline uint32_t word(const Words& words, int64_t e) { return words.w[e >> 2][e & 3]; }

// Box-Muller on 24-bit uniforms, z = sqrt(-2 ln u1) (cos 2 pi u2, sin 2 pi u2), u1 in (0, 1],
// u2 in [0, 1), with polynomial ln, sin and cos (Cephes' logf, sinf, cosf coefficients; relative
// error about 1e-7) written out so that the loop vectorizes on any x86 level and gives the same
// numbers with any libm. float64 outputs get the same float32 draws, widened.
inline float ln_unit(float u) {  // ln u, u in (0, 1]
  uint32_t bits;
  std::memcpy(&bits, &u, 4);
  int32_t e = int32_t(bits >> 23) - 126;                    // u = m 2^e, m in [0.5, 1)
  bits = (bits & 0x007FFFFFu) | 0x3F000000u;
  float m;
  std::memcpy(&m, &bits, 4);
  const int32_t low = m < 0.70710678f;                       // m in [sqrt(1/2), sqrt(2)) after this
  e -= low;
  const float x = m * float(1 + low) - 1.0f;
  const float z = x * x;
  float p = 7.0376836292e-2f;
  p = p * x - 1.1514610310e-1f;
  p = p * x + 1.1676998740e-1f;
  p = p * x - 1.2420140846e-1f;
  p = p * x + 1.4249322787e-1f;
  p = p * x - 1.6668057665e-1f;
  p = p * x + 2.0000714765e-1f;
  p = p * x - 2.4999993993e-1f;
  p = p * x + 3.3333331174e-1f;
  return x + (p * x * z - 0.5f * z) + float(e) * 0.693147180559945f;
}

inline void sincos_turn(float u, float& s, float& c) {  // sin and cos of 2 pi u, u in [0, 1)
  const float q = std::nearbyint(4.0f * u);                 // quadrant 0..4, f in [-1/8, 1/8] turn
  const float a = 6.28318530717958647692f * (u - 0.25f * q);  // [-pi/4, pi/4]
  const float a2 = a * a;
  const float sa = a + a * a2 * (-1.6666654611e-1f + a2 * (8.3321608736e-3f + a2 * -1.9515295891e-4f));
  const float ca = 1.0f - 0.5f * a2 + a2 * a2 * (4.166664568298827e-2f + a2 * (-1.388731625493765e-3f +
                                                                                 a2 * 2.443315711809948e-5f));
  const int32_t k = int32_t(q) & 3;                          // rotate by k quarter turns,
  const float odd = float(k & 1), sgn_s = float(1 - (k & 2)), sgn_c = float(1 - ((k + 1) & 2));  // without
  s = sgn_s * (odd * ca + (1.0f - odd) * sa);                // branches (they stop vectorization):
  c = sgn_c * (odd * sa + (1.0f - odd) * ca);                // k = 0..3: (sa, ca), (ca, -sa), (-sa, -ca), (-ca, sa)
}

// Elements [4 kBatch g0, 4 kBatch g1) of the direction. Cloned per instruction set (AVX-512, AVX2,
// baseline), the clone chosen when the library loads.
template <typename scalar_t>
__attribute__((always_inline)) inline void gaussian_range(scalar_t* out, int64_t n, uint64_t key, int64_t stream,
                                                          float scale, int64_t g0, int64_t g1) {
  Words words;
  float z[kBatch * 4];
  for (int64_t g = g0; g < g1; ++g) {
    blocks(words, g * kBatch, stream, key);
#pragma omp simd
    for (int64_t i = 0; i < kBatch * 2; ++i) {
      const uint32_t* flat = &words.w[0][0];  // pair i: elements 2i and 2i + 1
      const float u1 = float((flat[2 * i] >> 8) + 1u) * 0x1p-24f;
      const float u2 = float(flat[2 * i + 1] >> 8) * 0x1p-24f;
      const float r = scale * std::sqrt(-2.0f * ln_unit(u1));
      float s, c;
      sincos_turn(u2, s, c);
      z[2 * i] = r * c;
      z[2 * i + 1] = r * s;
    }
    const int64_t e0 = g * kBatch * 4, m = std::min<int64_t>(kBatch * 4, n - e0);
    for (int64_t i = 0; i < m; ++i) out[e0 + i] = scalar_t(z[i]);
  }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void gaussian_f32(float* out, int64_t n, uint64_t key, int64_t stream, float scale, int64_t g0, int64_t g1) {
  gaussian_range<float>(out, n, key, stream, scale, g0, g1);
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void gaussian_f64(double* out, int64_t n, uint64_t key, int64_t stream, float scale, int64_t g0, int64_t g1) {
  gaussian_range<double>(out, n, key, stream, scale, g0, g1);
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void rademacher_f32(float* out, int64_t n, uint64_t key, int64_t stream, float scale, int64_t g0, int64_t g1) {
  Words words;
  for (int64_t g = g0; g < g1; ++g) {
    blocks(words, g * kBatch, stream, key);
    const int64_t e0 = g * kBatch * 4, m = std::min<int64_t>(kBatch * 4, n - e0);
    for (int64_t i = 0; i < m; ++i) out[e0 + i] = (word(words, i) >> 31) ? scale : -scale;  // the top bit
  }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void rademacher_f64(double* out, int64_t n, uint64_t key, int64_t stream, float scale, int64_t g0, int64_t g1) {
  Words words;
  for (int64_t g = g0; g < g1; ++g) {
    blocks(words, g * kBatch, stream, key);
    const int64_t e0 = g * kBatch * 4, m = std::min<int64_t>(kBatch * 4, n - e0);
    for (int64_t i = 0; i < m; ++i) out[e0 + i] = (word(words, i) >> 31) ? double(scale) : -double(scale);
  }
}

template <typename F, typename scalar_t>
void run(F fn, scalar_t* out, int64_t n, uint64_t key, int64_t stream, float scale) {
  const int64_t groups = ((n + 3) / 4 + kBatch - 1) / kBatch;
  at::parallel_for(0, groups, std::max<int64_t>(1, kGrain / kBatch), [&](int64_t begin, int64_t end) {
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
  if (out.scalar_type() == at::kFloat) run(gaussian_f32, out.data_ptr<float>(), out.numel(), key, stream, float(scale));
  else run(gaussian_f64, out.data_ptr<double>(), out.numel(), key, stream, float(scale));
  return out;
}

// out = scale * (+-1 with probability 1/2) draws of (key, stream).
at::Tensor rademacher(at::Tensor out, uint64_t key, int64_t stream, double scale) {
  check(out);
  if (out.scalar_type() == at::kFloat) run(rademacher_f32, out.data_ptr<float>(), out.numel(), key, stream, float(scale));
  else run(rademacher_f64, out.data_ptr<double>(), out.numel(), key, stream, float(scale));
  return out;
}

// The raw Philox4x32-10 block, for the known-answer test (Random123's kat_vectors).
std::vector<uint32_t> philox4x32(std::vector<uint32_t> c, std::vector<uint32_t> k) {
  TORCH_CHECK(c.size() == 4 && k.size() == 2, "counter: 4 words, key: 2 words");
  philox(c[0], c[1], c[2], c[3], k[0], k[1]);
  return c;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gaussian", &gaussian);
  m.def("rademacher", &rademacher);
  m.def("philox4x32", &philox4x32);
}
