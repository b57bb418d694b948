// The draws of one instruction set, included once per set by philox.h (inside its namespace, after
// its `blocks`), so each set compiles the same source under its own target.

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

// Element 4 j + i of group g (i = 0..3) from z[i][j]: the words' order, interleaved back.
template <typename scalar_t>
inline void store(scalar_t* out, int64_t n, int64_t g, const float (&z)[4][kBatch]) {
  const int64_t e0 = g * kBatch * 4;
  if (n - e0 >= kBatch * 4) {
    for (int64_t j = 0; j < kBatch; ++j)
      for (int64_t i = 0; i < 4; ++i) out[e0 + 4 * j + i] = scalar_t(z[i][j]);
  } else {
    for (int64_t e = 0; e < n - e0; ++e) out[e0 + e] = scalar_t(z[e & 3][e >> 2]);
  }
}

// out[4 kBatch g0 .. 4 kBatch g1) = scale * N(0, 1): elements 4 j + h and 4 j + h + 1 are the
// Box-Muller pair of words h and h + 1 (h = 0, 2) of block j.
template <typename scalar_t>
void gaussian(scalar_t* out, int64_t n, uint64_t key, int64_t stream, float scale, int64_t g0, int64_t g1) {
  Words words;
  alignas(64) float z[4][kBatch];
  for (int64_t g = g0; g < g1; ++g) {
    blocks(words, g * kBatch, stream, key);
    for (int h = 0; h < 4; h += 2) {
#pragma omp simd
      for (int64_t j = 0; j < kBatch; ++j) {
        const float u1 = float((words.w[h][j] >> 8) + 1u) * 0x1p-24f;
        const float u2 = float(words.w[h + 1][j] >> 8) * 0x1p-24f;
        const float r = scale * std::sqrt(-2.0f * ln_unit(u1));
        float s, c;
        sincos_turn(u2, s, c);
        z[h][j] = r * c;
        z[h + 1][j] = r * s;
      }
    }
    store(out, n, g, z);
  }
}

// out[...] = scale * (+-1 by each word's top bit).
template <typename scalar_t>
void rademacher(scalar_t* out, int64_t n, uint64_t key, int64_t stream, float scale, int64_t g0, int64_t g1) {
  Words words;
  alignas(64) float z[4][kBatch];
  for (int64_t g = g0; g < g1; ++g) {
    blocks(words, g * kBatch, stream, key);
    for (int64_t i = 0; i < 4; ++i)
#pragma omp simd
      for (int64_t j = 0; j < kBatch; ++j) z[i][j] = (words.w[i][j] >> 31) ? scale : -scale;
    store(out, n, g, z);
  }
}
