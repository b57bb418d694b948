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
void tile_kernel(const uint64_t* a, int64_t lda, const uint64_t* b, int64_t kw, int64_t* t, int shift, bool add) {
  __m512i acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_setzero_si512();
  for (int64_t w = 0; w < kw; ++w) {
    const uint64_t* bw = b + w * kNR;
    const __m512i b0 = _mm512_loadu_si512(bw), b1 = _mm512_loadu_si512(bw + 8);
    const __m512i b2 = _mm512_loadu_si512(bw + 16), b3 = _mm512_loadu_si512(bw + 24);
    for (int r = 0; r < MR; ++r) {
      const __m512i av = _mm512_set1_epi64(static_cast<int64_t>(a[r * lda + w]));
      if (OP == lowbit::kXor) {
        acc[r][0] = _mm512_add_epi64(acc[r][0], _mm512_popcnt_epi64(_mm512_xor_si512(av, b0)));
        acc[r][1] = _mm512_add_epi64(acc[r][1], _mm512_popcnt_epi64(_mm512_xor_si512(av, b1)));
        acc[r][2] = _mm512_add_epi64(acc[r][2], _mm512_popcnt_epi64(_mm512_xor_si512(av, b2)));
        acc[r][3] = _mm512_add_epi64(acc[r][3], _mm512_popcnt_epi64(_mm512_xor_si512(av, b3)));
      } else {
        acc[r][0] = _mm512_add_epi64(acc[r][0], _mm512_popcnt_epi64(_mm512_and_si512(av, b0)));
        acc[r][1] = _mm512_add_epi64(acc[r][1], _mm512_popcnt_epi64(_mm512_and_si512(av, b1)));
        acc[r][2] = _mm512_add_epi64(acc[r][2], _mm512_popcnt_epi64(_mm512_and_si512(av, b2)));
        acc[r][3] = _mm512_add_epi64(acc[r][3], _mm512_popcnt_epi64(_mm512_and_si512(av, b3)));
      }
    }
  }
  const __m512i sh = _mm512_set1_epi64(shift);
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 4; ++v) {
      int64_t* dst = t + r * kNR + 8 * v;
      __m512i x = _mm512_maskz_sllv_epi64(0xFF, acc[r][v], sh);  // maskz: no "undefined" source
      if (add) x = _mm512_add_epi64(x, _mm512_loadu_si512(dst));
      _mm512_storeu_si512(dst, x);
    }
}

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

#include "kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // not x86-64: no AVX-512 build
namespace lowbit {
const Kernels kAvx512 = {"avx512_vpopcntdq", false, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                         nullptr};
}  // namespace lowbit
#endif
