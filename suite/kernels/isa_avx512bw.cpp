// The AVX-512BW build of the kernels (kernels_impl.h explains the structure), for CPUs with AVX-512 but
// without VPOPCNTDQ (Intel Skylake-SP and Cascade Lake Xeons): the AVX2 build's nibble-lookup popcount
// (isa_avx2.cpp) on 512-bit vectors, vpshufb and vpsadbw being AVX-512BW instructions. A tile is 4 rows
// x 16 columns (two 512-bit vectors) at a time.
#include <stdint.h>

#include "lowbit.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,popcnt,bmi,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,popcnt,bmi,bmi2")
#endif

#define LB_KERNELS_NAME kAvx512bw
#define LB_ISA_NAME "avx512bw"

namespace {

using lowbit::kNR;

constexpr int64_t kMR = 4;

inline __m512i byte_counts(__m512i x, __m512i lut, __m512i low) {
  const __m512i lo = _mm512_and_si512(x, low), hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), low);
  return _mm512_add_epi8(_mm512_shuffle_epi8(lut, lo), _mm512_shuffle_epi8(lut, hi));
}

template <int MR, int OP>
void tile_kernel(const uint64_t* a, int64_t lda, const uint64_t* b, int64_t kw, int32_t* t, int shift, bool add,
                 int64_t moff) {
  const __m128i nibble_counts = _mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m512i lut = _mm512_maskz_broadcast_i32x4(0xFFFF, nibble_counts);
  const __m512i low = _mm512_set1_epi8(0x0f), zero = _mm512_setzero_si512();
  for (int64_t s = 0; s < kNR; s += 16) {  // 16 columns (lanes) at a time
    __m512i sum[MR][2];
    for (int r = 0; r < MR; ++r) sum[r][0] = sum[r][1] = zero;
    for (int64_t w0 = 0; w0 < kw; w0 += 31) {  // byte counters: at most 31 words of 8 bits a byte
      const int64_t w1 = w0 + 31 < kw ? w0 + 31 : kw;
      __m512i acc[MR][2];
      for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = zero;
      for (int64_t w = w0; w < w1; ++w) {
        const __m512i b0 = _mm512_loadu_si512(b + w * kNR + s), b1 = _mm512_loadu_si512(b + w * kNR + s + 8);
        __m512i m0 = zero, m1 = zero;
        if (OP == lowbit::kXorMaskB) {
          m0 = _mm512_loadu_si512(b + moff + w * kNR + s);
          m1 = _mm512_loadu_si512(b + moff + w * kNR + s + 8);
        }
        for (int r = 0; r < MR; ++r) {
          const __m512i av = _mm512_set1_epi64(static_cast<int64_t>(a[r * lda + w]));
          __m512i x0, x1;
          if (OP == lowbit::kAnd) {
            x0 = _mm512_and_si512(av, b0), x1 = _mm512_and_si512(av, b1);
          } else if (OP == lowbit::kXor) {
            x0 = _mm512_xor_si512(av, b0), x1 = _mm512_xor_si512(av, b1);
          } else {  // (a xor b) and mask in one vpternlogq
            const __m512i am = OP == lowbit::kXorMaskA ? _mm512_set1_epi64(static_cast<int64_t>(a[moff + r * lda + w]))
                                                       : zero;
            x0 = _mm512_ternarylogic_epi64(av, b0, OP == lowbit::kXorMaskA ? am : m0, 0x28);
            x1 = _mm512_ternarylogic_epi64(av, b1, OP == lowbit::kXorMaskA ? am : m1, 0x28);
          }
          acc[r][0] = _mm512_add_epi8(acc[r][0], byte_counts(x0, lut, low));
          acc[r][1] = _mm512_add_epi8(acc[r][1], byte_counts(x1, lut, low));
        }
      }
      for (int r = 0; r < MR; ++r) {
        sum[r][0] = _mm512_add_epi64(sum[r][0], _mm512_sad_epu8(acc[r][0], zero));
        sum[r][1] = _mm512_add_epi64(sum[r][1], _mm512_sad_epu8(acc[r][1], zero));
      }
    }
    const __m256i sh = _mm256_set1_epi32(shift);
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < 2; ++v) {  // the 64-bit lane sums (< 2^31) narrowed to int32
        __m256i* dst = reinterpret_cast<__m256i*>(t + r * kNR + s + 8 * v);
        __m256i x = _mm256_sllv_epi32(_mm512_maskz_cvtepi64_epi32(0xFF, sum[r][v]), sh);
        if (add) x = _mm256_add_epi32(x, _mm256_loadu_si256(dst));
        _mm256_storeu_si256(dst, x);
      }
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

#else  // not x86-64: no AVX-512BW build
namespace lowbit {
const Kernels kAvx512bw = {"avx512bw", false, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                           nullptr};
}  // namespace lowbit
#endif
