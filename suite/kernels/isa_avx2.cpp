// The AVX2 build of the kernels (kernels_impl.h explains the structure). AVX2 has no vector popcount:
// each byte's count comes from two 16-entry table lookups (vpshufb on the low and high nibbles), the
// byte counts add up for at most 31 words (31 x 8 < 256), then vpsadbw sums them into 64-bit lanes
// (W. Mula, N. Kurz, D. Lemire, "Faster population counts using AVX2 instructions", Computer Journal
// 2018). The xor and the and commute with the nibble split ((a ^ b) & 0x0f = (a & 0x0f) ^ (b & 0x0f)),
// so both operands are split before the product: B's 4 lanes once per word for all the rows of the
// tile, A's words once per tile (broadcast to vectors in a stack buffer, read as memory operands), and
// a row times 4 lanes costs 2 xors, 2 lookups and 2 adds per word instead of 8 operations. A tile is
// 7 rows: 6 by vectors (their byte counters, B's two nibble vectors and the table fit the 16 registers
// without spills) and the 7th by scalar popcnt, which runs on the integer units, otherwise idle here
// (measured on Zen 4, 200 x 1024 x 1024: 6 + 1 rows about 10% faster than 8 vector rows, 17% faster than
// the lookup on the product). The masked ops keep that lookup kernel (4 rows x 8 columns): their mask
// would take the registers the split saves.
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

constexpr int64_t kMR = 7;
constexpr int kVR = 6;          // rows of a tile done with vectors (the rest: scalar popcnt)
constexpr int64_t kChunk = 16;  // words per pass: A's broadcast nibbles of 6 rows = 6 KB of stack

inline __m256i byte_counts(__m256i x, __m256i lut, __m256i low) {
  const __m256i lo = _mm256_and_si256(x, low), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
  return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

// The masked ops: up to 4 rows x 8 columns (two vectors) at a time, the lookup on the product's nibbles.
template <int MR, int OP>
void tile_lookup(const uint64_t* a, int64_t lda, const uint64_t* b, int64_t kw, int32_t* t, int shift, bool add,
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

// kXor and kAnd: split nibbles (the file's top comment), 4 lanes at a time.
template <int MR, int OP>
void tile_split(const uint64_t* a, int64_t lda, const uint64_t* b, int64_t kw, int32_t* t, int shift, bool add) {
  constexpr int VR = MR < kVR ? MR : kVR;
  constexpr int SR = MR - VR;
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
  const __m128i sh = _mm_cvtsi32_si128(shift);
  const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  __m256i as[kChunk][VR][2];
  for (int64_t w0 = 0; w0 < kw; w0 += kChunk) {
    const int64_t nw = w0 + kChunk < kw ? kChunk : kw - w0;
    // A's nibbles, broadcast: four words at a time (one load, one split, a vpermq per word), the tail alone
    for (int r = 0; r < VR; ++r) {
      const uint64_t* ar = a + r * lda + w0;
      int64_t w = 0;
      for (; w + 4 <= nw; w += 4) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar + w));
        const __m256i xl = _mm256_and_si256(x, low), xh = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
        as[w][r][0] = _mm256_permute4x64_epi64(xl, 0x00), as[w][r][1] = _mm256_permute4x64_epi64(xh, 0x00);
        as[w + 1][r][0] = _mm256_permute4x64_epi64(xl, 0x55), as[w + 1][r][1] = _mm256_permute4x64_epi64(xh, 0x55);
        as[w + 2][r][0] = _mm256_permute4x64_epi64(xl, 0xaa), as[w + 2][r][1] = _mm256_permute4x64_epi64(xh, 0xaa);
        as[w + 3][r][0] = _mm256_permute4x64_epi64(xl, 0xff), as[w + 3][r][1] = _mm256_permute4x64_epi64(xh, 0xff);
      }
      for (; w < nw; ++w) {
        const __m256i x = _mm256_set1_epi64x(static_cast<int64_t>(ar[w]));
        as[w][r][0] = _mm256_and_si256(x, low), as[w][r][1] = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
      }
    }
    const bool acc_t = add || w0 > 0;  // later passes add to what the first stored
    for (int64_t s = 0; s < kNR; s += 4) {
      __m256i acc[VR];
      uint64_t sacc[SR > 0 ? SR : 1][4];
      for (int r = 0; r < VR; ++r) acc[r] = zero;
      for (int r = 0; r < SR; ++r) sacc[r][0] = sacc[r][1] = sacc[r][2] = sacc[r][3] = 0;
      const uint64_t* bw = b + w0 * kNR + s;
      const uint64_t* asr = a + VR * lda + w0;
      for (int64_t w = 0; w < nw; ++w, bw += kNR) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bw));
        const __m256i bl = _mm256_and_si256(x, low), bh = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
        for (int r = 0; r < VR; ++r) {
          const __m256i xl = OP == lowbit::kAnd ? _mm256_and_si256(as[w][r][0], bl) : _mm256_xor_si256(as[w][r][0], bl);
          const __m256i xh = OP == lowbit::kAnd ? _mm256_and_si256(as[w][r][1], bh) : _mm256_xor_si256(as[w][r][1], bh);
          acc[r] = _mm256_add_epi8(acc[r], _mm256_shuffle_epi8(lut, xl));
          acc[r] = _mm256_add_epi8(acc[r], _mm256_shuffle_epi8(lut, xh));
        }
        for (int r = 0; r < SR; ++r) {
          const uint64_t av = asr[r * lda + w];
          for (int l = 0; l < 4; ++l)
            sacc[r][l] += static_cast<uint64_t>(__builtin_popcountll(OP == lowbit::kAnd ? av & bw[l] : av ^ bw[l]));
        }
      }
      // the 64-bit lane sums (< 2^31) to int32: their even 32-bit halves, in lane order
      for (int r = 0; r < VR; ++r) {
        const __m256i v = _mm256_permutevar8x32_epi32(_mm256_sll_epi64(_mm256_sad_epu8(acc[r], zero), sh), even);
        __m128i y = _mm256_castsi256_si128(v);
        __m128i* dst = reinterpret_cast<__m128i*>(t + r * kNR + s);
        if (acc_t) y = _mm_add_epi32(y, _mm_loadu_si128(dst));
        _mm_storeu_si128(dst, y);
      }
      for (int r = 0; r < SR; ++r)
        for (int l = 0; l < 4; ++l) {
          int32_t* dst = t + (VR + r) * kNR + s + l;
          const int32_t v = static_cast<int32_t>(static_cast<uint32_t>(sacc[r][l]) << shift);
          *dst = acc_t ? *dst + v : v;
        }
    }
  }
}

template <int MR, int OP>
void tile_kernel(const uint64_t* a, int64_t lda, const uint64_t* b, int64_t kw, int32_t* t, int shift, bool add,
                 int64_t moff) {
  if (OP == lowbit::kXor || OP == lowbit::kAnd) {
    tile_split<MR, OP>(a, lda, b, kw, t, shift, add);
  } else {  // at most 4 rows at a time: more would spill the lookup kernel's counters
    constexpr int M0 = MR < 4 ? MR : 4;
    tile_lookup<M0, OP>(a, lda, b, kw, t, shift, add, moff);
    if (MR > M0) tile_lookup<(MR > M0 ? MR - M0 : 1), OP>(a + M0 * lda, lda, b, kw, t + M0 * kNR, shift, add, moff);
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

namespace lowbit {
int64_t avx2_register_loop(int64_t group_words, uint64_t seed) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
  __m256i acc[kVR], as[kVR][2], sum = zero, x = _mm256_set1_epi64x(static_cast<int64_t>(seed * 7));
  for (int r = 0; r < kVR; ++r) {  // A's nibbles, as the split tile holds them
    acc[r] = zero;
    as[r][0] = _mm256_and_si256(_mm256_set1_epi64x(static_cast<int64_t>(seed + r)), low);
    as[r][1] = _mm256_and_si256(_mm256_set1_epi64x(static_cast<int64_t>(seed * 3 + r)), low);
  }
  for (int64_t i = 0; i < group_words; ++i) {
    asm volatile("" : "+x"(x));  // opaque: the compiler cannot hoist the work
    const __m256i bl = _mm256_and_si256(x, low), bh = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
    for (int r = 0; r < kVR; ++r) {
      __m256i a0 = as[r][0], a1 = as[r][1];
      asm volatile("" : "+x"(a0), "+x"(a1));
      acc[r] = _mm256_add_epi8(acc[r], _mm256_shuffle_epi8(lut, _mm256_xor_si256(a0, bl)));
      acc[r] = _mm256_add_epi8(acc[r], _mm256_shuffle_epi8(lut, _mm256_xor_si256(a1, bh)));
    }
    if (i % kChunk == kChunk - 1 || i == group_words - 1) {  // the byte counters summed, as after a pass
      for (int r = 0; r < kVR; ++r) {
        sum = _mm256_add_epi64(sum, _mm256_sad_epu8(acc[r], zero));
        acc[r] = zero;
      }
    }
  }
  alignas(32) int64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sum);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
}  // namespace lowbit

#include "kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // not x86-64: no AVX2 build
namespace lowbit {
int64_t avx2_register_loop(int64_t, uint64_t) { return -1; }
const Kernels kAvx2 = {"avx2", false, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
}  // namespace lowbit
#endif
