// The AVX-512 build of the kernels (kernels_impl.h explains the structure), for CPUs with VPOPCNTDQ
// (a popcount of each 64-bit lane: Intel since Ice Lake, AMD since Zen 4). A tile is 4 rows x 32
// columns: 16 accumulators of 8 x 64-bit lanes, 4 vectors of B loaded once per word and reused by the
// 4 rows, each row's word broadcast once; per word 16 x (xor or and, popcount, add).
#include <stdint.h>

#include "lowbit.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vpopcntdq,popcnt,bmi,bmi2"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vpopcntdq,popcnt,bmi,bmi2")
#endif

#define LB_KERNELS_NAME kAvx512
#define LB_ISA_NAME "avx512_vpopcntdq"

namespace {

using lowbit::kNR;

constexpr int64_t kMR = 4;

template <int MR, int OP>
inline __attribute__((always_inline)) void accumulate(const uint64_t* a, int64_t lda, const uint64_t* b, int64_t kw,
                                                      __m512i (&acc)[MR][4], int64_t moff) {
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_setzero_si512();
  for (int64_t w = 0; w < kw; ++w) {
    const uint64_t* bw = b + w * kNR;
    const __m512i b0 = _mm512_loadu_si512(bw), b1 = _mm512_loadu_si512(bw + 8);
    const __m512i b2 = _mm512_loadu_si512(bw + 16), b3 = _mm512_loadu_si512(bw + 24);
    __m512i m0 = b0, m1 = b1, m2 = b2, m3 = b3;  // kXorMaskB's mask vectors (unused otherwise)
    if (OP == lowbit::kXorMaskB) {
      const uint64_t* mw = b + moff + w * kNR;
      m0 = _mm512_loadu_si512(mw), m1 = _mm512_loadu_si512(mw + 8);
      m2 = _mm512_loadu_si512(mw + 16), m3 = _mm512_loadu_si512(mw + 24);
    }
    for (int r = 0; r < MR; ++r) {
      const __m512i av = _mm512_set1_epi64(static_cast<int64_t>(a[r * lda + w]));
      if (OP == lowbit::kXor) {
        acc[r][0] = _mm512_add_epi64(acc[r][0], _mm512_popcnt_epi64(_mm512_xor_si512(av, b0)));
        acc[r][1] = _mm512_add_epi64(acc[r][1], _mm512_popcnt_epi64(_mm512_xor_si512(av, b1)));
        acc[r][2] = _mm512_add_epi64(acc[r][2], _mm512_popcnt_epi64(_mm512_xor_si512(av, b2)));
        acc[r][3] = _mm512_add_epi64(acc[r][3], _mm512_popcnt_epi64(_mm512_xor_si512(av, b3)));
      } else if (OP == lowbit::kAnd) {
        acc[r][0] = _mm512_add_epi64(acc[r][0], _mm512_popcnt_epi64(_mm512_and_si512(av, b0)));
        acc[r][1] = _mm512_add_epi64(acc[r][1], _mm512_popcnt_epi64(_mm512_and_si512(av, b1)));
        acc[r][2] = _mm512_add_epi64(acc[r][2], _mm512_popcnt_epi64(_mm512_and_si512(av, b2)));
        acc[r][3] = _mm512_add_epi64(acc[r][3], _mm512_popcnt_epi64(_mm512_and_si512(av, b3)));
      } else {
        // (a xor b) and mask in one vpternlogq (truth table 0x28): the masked ops cost what xor costs
        const __m512i am = OP == lowbit::kXorMaskA ? _mm512_set1_epi64(static_cast<int64_t>(a[moff + r * lda + w]))
                                                   : _mm512_setzero_si512();
        const __m512i k0 = OP == lowbit::kXorMaskA ? am : m0, k1 = OP == lowbit::kXorMaskA ? am : m1;
        const __m512i k2 = OP == lowbit::kXorMaskA ? am : m2, k3 = OP == lowbit::kXorMaskA ? am : m3;
        acc[r][0] = _mm512_add_epi64(acc[r][0], _mm512_popcnt_epi64(_mm512_ternarylogic_epi64(av, b0, k0, 0x28)));
        acc[r][1] = _mm512_add_epi64(acc[r][1], _mm512_popcnt_epi64(_mm512_ternarylogic_epi64(av, b1, k1, 0x28)));
        acc[r][2] = _mm512_add_epi64(acc[r][2], _mm512_popcnt_epi64(_mm512_ternarylogic_epi64(av, b2, k2, 0x28)));
        acc[r][3] = _mm512_add_epi64(acc[r][3], _mm512_popcnt_epi64(_mm512_ternarylogic_epi64(av, b3, k3, 0x28)));
      }
    }
  }
}

template <int MR, int OP>
void tile_kernel(const uint64_t* a, int64_t lda, const uint64_t* b, int64_t kw, int32_t* t, int shift, bool add,
                 int64_t moff) {
  __m512i acc[MR][4];
  accumulate<MR, OP>(a, lda, b, kw, acc, moff);
  // the 64-bit lane sums (< 2^31) narrowed to int32 (vpmovqd), shifted, added where asked
  const __m256i sh = _mm256_set1_epi32(shift);
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 4; ++v) {
      __m256i* dst = reinterpret_cast<__m256i*>(t + r * kNR + 8 * v);
      __m256i x = _mm256_sllv_epi32(_mm512_maskz_cvtepi64_epi32(0xFF, acc[r][v]), sh);  // maskz: no "undefined" source
      if (add) x = _mm256_add_epi32(x, _mm256_loadu_si256(dst));
      _mm256_storeu_si256(dst, x);
    }
}

// A full tile with the simple epilogue straight from the registers (kernels_impl.h: epilogue, same
// operations in the same order: I = c0 + c1 U + crow rowsum; int32, or float I rs scale cs + rb + cb).
template <int MR, int OP>
void tile_fused(const uint64_t* a, int64_t lda, const uint64_t* b, int64_t kw, const lowbit::Epilogue& e, int64_t i0,
                int64_t j0, int64_t off, int64_t moff) {
  __m512i acc[MR][4];
  accumulate<MR, OP>(a, lda, b, kw, acc, moff);
  // two accumulators' 64-bit lane sums (< 2^31) as one vector of 16 int32 (their low halves, in lane
  // order), the epilogue on 16 lanes at a time, its loops unrolled and xnor_matmul's case apart: so the
  // accumulators stay in registers (spilled to the stack, they cost a tenth of the 200 x 1024 x 1024
  // product's time; the case apart, 3% more)
  const __m512i low_halves = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i c1 = _mm512_set1_epi32(static_cast<int32_t>(e.c1));
  if (e.out_i && !e.rowsum) {  // xnor_matmul's I = c0 + c1 U
    const __m512i c0 = _mm512_set1_epi32(static_cast<int32_t>(e.c0));
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const __m512i u = _mm512_permutex2var_epi32(acc[r][2 * h], low_halves, acc[r][2 * h + 1]);
        _mm512_storeu_si512(e.out_i + e.ldo * (i0 + r) + off + 16 * h, _mm512_add_epi32(c0, _mm512_mullo_epi32(c1, u)));
      }
    return;
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    const int64_t i = i0 + r;
    const __m512i base = _mm512_set1_epi32(static_cast<int32_t>(e.c0 + (e.rowsum ? e.crow * e.rowsum[i] : 0)));
    const int64_t o = e.ldo * i + off;
    const __m512 rsi = _mm512_set1_ps((e.rs ? e.rs[i] : 1.0f) * e.scale), rbi = _mm512_set1_ps(e.rb ? e.rb[i] : 0.0f);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m512i u = _mm512_permutex2var_epi32(acc[r][2 * h], low_halves, acc[r][2 * h + 1]);
      const __m512i val = _mm512_add_epi32(base, _mm512_mullo_epi32(c1, u));
      if (e.out_i) {
        _mm512_storeu_si512(e.out_i + o + 16 * h, val);
        continue;
      }
      __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(val), rsi);
      if (e.cs) f = _mm512_mul_ps(f, _mm512_loadu_ps(e.cs + j0 + 16 * h));
      f = _mm512_add_ps(f, rbi);
      if (e.cb) f = _mm512_add_ps(f, _mm512_loadu_ps(e.cb + j0 + 16 * h));
      _mm512_storeu_ps(e.out_f + o + 16 * h, f);
    }
  }
}

#define LB_FUSED_TILE 1

uint64_t sign_word_f32(const float* p) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512i izero = _mm512_setzero_si512();
  uint64_t bits = 0;
  for (int k = 0; k < 4; ++k) {
    const __m512i v = _mm512_castps_si512(_mm512_add_ps(_mm512_loadu_ps(p + 16 * k), zero));
    bits |= static_cast<uint64_t>(_mm512_cmplt_epi32_mask(v, izero)) << (16 * k);
  }
  return bits;
}

}  // namespace

namespace lowbit {
int64_t avx512_register_loop(int64_t tile_words, uint64_t seed) {
  __m512i acc[kMR][4], b[4], a[kMR];
  for (int v = 0; v < 4; ++v) b[v] = _mm512_set1_epi64(static_cast<int64_t>(seed * (2 * v + 3)));
  for (int r = 0; r < kMR; ++r) {
    a[r] = _mm512_set1_epi64(static_cast<int64_t>(seed + r + 1));
    for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_setzero_si512();
  }
  for (int64_t i = 0; i < tile_words; ++i) {
    for (int v = 0; v < 4; ++v) asm volatile("" : "+v"(b[v]));  // opaque: the compiler cannot hoist the work
    for (int r = 0; r < kMR; ++r) {
      __m512i av = a[r];
      asm volatile("" : "+v"(av));
      for (int v = 0; v < 4; ++v)
        acc[r][v] = _mm512_add_epi64(acc[r][v], _mm512_popcnt_epi64(_mm512_xor_si512(av, b[v])));
    }
  }
  __m512i s = _mm512_setzero_si512();
  for (int r = 0; r < kMR; ++r)
    for (int v = 0; v < 4; ++v) s = _mm512_add_epi64(s, acc[r][v]);
  return _mm512_reduce_add_epi64(s);
}
}  // namespace lowbit

#include "kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // not x86-64: no AVX-512 build
namespace lowbit {
int64_t avx512_register_loop(int64_t, uint64_t) { return -1; }
const Kernels kAvx512 = {"avx512_vpopcntdq", false, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                         nullptr, nullptr};
}  // namespace lowbit
#endif
