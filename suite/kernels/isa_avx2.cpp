// The AVX2 build of the kernels (kernels_impl.h explains the structure). AVX2 has no vector popcount:
// each byte's count comes from two 16-entry table lookups (vpshufb on the low and high nibbles), the
// byte counts add up for at most 31 words (31 x 8 < 256), then vpsadbw sums them into 64-bit lanes
// (W. Mula, N. Kurz, D. Lemire, "Faster population counts using AVX2 instructions", Computer Journal
// 2018). A tile is 4 rows x 8 columns (two 256-bit vectors) at a time: its byte counters, the two
// vectors of B and the constants fill the 16 registers.
#include <stdint.h>

#include "lowbit.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,popcnt,bmi,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,popcnt,bmi,bmi2")
#endif

#define LB_KERNELS_NAME kAvx2
#define LB_ISA_NAME "avx2"

namespace {

using lowbit::kNR;

constexpr int64_t kMR = 4;

inline __m256i byte_counts(__m256i x, __m256i lut, __m256i low) {
  const __m256i lo = _mm256_and_si256(x, low), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
  return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

template <int MR, int OP>
void tile_kernel(const uint64_t* a, int64_t lda, const uint64_t* b, int64_t kw, int32_t* t, int shift, bool add,
                 int64_t moff) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
  for (int64_t s = 0; s < kNR; s += 8) {  // 8 columns (lanes) at a time
    __m256i sum[MR][2];
    for (int r = 0; r < MR; ++r) sum[r][0] = sum[r][1] = zero;
    for (int64_t w0 = 0; w0 < kw; w0 += 31) {
      const int64_t w1 = w0 + 31 < kw ? w0 + 31 : kw;
      __m256i acc[MR][2];
      for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = zero;
      for (int64_t w = w0; w < w1; ++w) {
        const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + w * kNR + s));
        const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + w * kNR + s + 4));
        for (int r = 0; r < MR; ++r) {
          const __m256i av = _mm256_set1_epi64x(static_cast<int64_t>(a[r * lda + w]));
          __m256i x0 = OP == lowbit::kAnd ? _mm256_and_si256(av, b0) : _mm256_xor_si256(av, b0);
          __m256i x1 = OP == lowbit::kAnd ? _mm256_and_si256(av, b1) : _mm256_xor_si256(av, b1);
          if (OP == lowbit::kXorMaskA) {
            const __m256i am = _mm256_set1_epi64x(static_cast<int64_t>(a[moff + r * lda + w]));
            x0 = _mm256_and_si256(x0, am);
            x1 = _mm256_and_si256(x1, am);
          } else if (OP == lowbit::kXorMaskB) {
            x0 = _mm256_and_si256(x0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + moff + w * kNR + s)));
            x1 = _mm256_and_si256(x1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + moff + w * kNR + s + 4)));
          }
          acc[r][0] = _mm256_add_epi8(acc[r][0], byte_counts(x0, lut, low));
          acc[r][1] = _mm256_add_epi8(acc[r][1], byte_counts(x1, lut, low));
        }
      }
      for (int r = 0; r < MR; ++r) {
        sum[r][0] = _mm256_add_epi64(sum[r][0], _mm256_sad_epu8(acc[r][0], zero));
        sum[r][1] = _mm256_add_epi64(sum[r][1], _mm256_sad_epu8(acc[r][1], zero));
      }
    }
    // the 64-bit lane sums (< 2^31) to int32: even 32-bit halves of the two vectors, in lane order
    const __m128i sh = _mm_cvtsi32_si128(shift);
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int r = 0; r < MR; ++r) {
      const __m256i lo = _mm256_permutevar8x32_epi32(_mm256_sll_epi64(sum[r][0], sh), even);
      const __m256i hi = _mm256_permutevar8x32_epi32(_mm256_sll_epi64(sum[r][1], sh), even);
      __m256i x = _mm256_permute2x128_si256(lo, hi, 0x20);
      __m256i* dst = reinterpret_cast<__m256i*>(t + r * kNR + s);
      if (add) x = _mm256_add_epi32(x, _mm256_loadu_si256(dst));
      _mm256_storeu_si256(dst, x);
    }
  }
}

uint64_t sign_word_f32(const float* p) {
  const __m256 zero = _mm256_setzero_ps();
  uint64_t bits = 0;
  for (int k = 0; k < 8; ++k)
    bits |= static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_ps(_mm256_add_ps(_mm256_loadu_ps(p + 8 * k),
                                                                                        zero))))
            << (8 * k);
  return bits;
}

}  // namespace

#include "kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // not x86-64: no AVX2 build
namespace lowbit {
const Kernels kAvx2 = {"avx2", false, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
}  // namespace lowbit
#endif
