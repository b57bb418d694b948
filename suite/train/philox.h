// Philox4x32-10 and the draws made from it, without torch (directions.cpp binds them). Counter-based:
// element e of stream s under key K is a pure function of (K, s, e), computed from Philox4x32-10
// (Salmon, Moraes, Dror, Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11), so a
// direction is drawn on all of torch's threads, the same on any thread count, and can be drawn
// again from its key instead of being kept.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace philox {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // Philox4x32 multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key schedule (Weyl) constants
constexpr int64_t kBatch = 16;                               // blocks computed together (vectorized)

// Philox4x32-10 of counter (c0..c3) under key (k0, k1), in place: the reference the builds below
// are tested against (Random123's known answers).
inline void block(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
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

// The 4 words of blocks first..first + kBatch - 1 of a stream, word-major (w[i][j]: word i of block
// first + j, i.e. element 4 j + i of the group): each round is then one vector operation per word.
struct Words { alignas(64) uint32_t w[4][kBatch]; };

// Three builds of `blocks` (Philox4x32-10 of kBatch = 16 consecutive blocks, word-major), one per
// instruction set. Each round multiplies 32-bit words into 64-bit products: AVX-512 and AVX2 keep
// each word in a 64-bit lane and use vpmuludq (_mm*_mul_epu32), which reads the lane's low half, so
// the high halves may hold anything and are never masked (XOR and the shift keep the low halves
// exact; the stores keep only them). The portable build is the same loop in scalar C++.
namespace portable {
inline void blocks(Words& out, int64_t first, int64_t stream, uint64_t key) {
  uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  uint32_t* c0 = out.w[0];
  uint32_t* c1 = out.w[1];
  uint32_t* c2 = out.w[2];
  uint32_t* c3 = out.w[3];
  for (int64_t j = 0; j < kBatch; ++j) {
    const uint64_t b = uint64_t(first + j);
    c0[j] = uint32_t(b), c1[j] = uint32_t(b >> 32), c2[j] = uint32_t(stream), c3[j] = uint32_t(uint64_t(stream) >> 32);
  }
  for (int r = 0; r < 10; ++r, k0 += kW0, k1 += kW1) {
    for (int64_t j = 0; j < kBatch; ++j) {
      const uint64_t p0 = uint64_t(kM0) * c0[j], p1 = uint64_t(kM1) * c2[j];
      const uint32_t n0 = uint32_t(p1 >> 32) ^ c1[j] ^ k0, n2 = uint32_t(p0 >> 32) ^ c3[j] ^ k1;
      c1[j] = uint32_t(p1), c3[j] = uint32_t(p0), c0[j] = n0, c2[j] = n2;
    }
  }
}
#include "philox_draws.h"
}  // namespace portable

#pragma GCC push_options
#pragma GCC target("avx2")
namespace avx2 {
inline void blocks(Words& out, int64_t first, int64_t stream,
                                                                  uint64_t key) {
  constexpr int kLanes = 4, kVecs = kBatch / kLanes;
  const __m256i m0 = _mm256_set1_epi64x(kM0), m1 = _mm256_set1_epi64x(kM1);
  __m256i c0[kVecs], c1[kVecs], c2[kVecs], c3[kVecs];
  const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
  for (int v = 0; v < kVecs; ++v) {
    const __m256i b = _mm256_add_epi64(_mm256_set1_epi64x(first + v * kLanes), lane);
    c0[v] = b;
    c1[v] = _mm256_srli_epi64(b, 32);
    c2[v] = _mm256_set1_epi64x(uint32_t(stream));
    c3[v] = _mm256_set1_epi64x(uint32_t(uint64_t(stream) >> 32));
  }
  uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  for (int r = 0; r < 10; ++r, k0 += kW0, k1 += kW1) {
    const __m256i key0 = _mm256_set1_epi64x(k0), key1 = _mm256_set1_epi64x(k1);
    for (int v = 0; v < kVecs; ++v) {
      const __m256i p0 = _mm256_mul_epu32(c0[v], m0), p1 = _mm256_mul_epu32(c2[v], m1);
      c0[v] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1[v]), key0);
      c2[v] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3[v]), key1);
      c1[v] = p1;
      c3[v] = p0;
    }
  }
  const __m256i low = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);  // the 4 low halves into the low 128 bits
  __m256i* const words[4] = {c0, c1, c2, c3};
  for (int i = 0; i < 4; ++i)
    for (int v = 0; v < kVecs; ++v)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(&out.w[i][v * kLanes]),
                       _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(words[i][v], low)));
}
#include "philox_draws.h"
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f")
namespace avx512 {
inline void blocks(Words& out, int64_t first, int64_t stream,
                                                                    uint64_t key) {
  constexpr int kLanes = 8, kVecs = kBatch / kLanes;
  const __m512i m0 = _mm512_set1_epi64(kM0), m1 = _mm512_set1_epi64(kM1);
  __m512i c0[kVecs], c1[kVecs], c2[kVecs], c3[kVecs];
  const __m512i lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  for (int v = 0; v < kVecs; ++v) {
    const __m512i b = _mm512_add_epi64(_mm512_set1_epi64(first + v * kLanes), lane);
    c0[v] = b;
    c1[v] = _mm512_srli_epi64(b, 32);
    c2[v] = _mm512_set1_epi64(uint32_t(stream));
    c3[v] = _mm512_set1_epi64(uint32_t(uint64_t(stream) >> 32));
  }
  uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  for (int r = 0; r < 10; ++r, k0 += kW0, k1 += kW1) {
    const __m512i key0 = _mm512_set1_epi64(k0), key1 = _mm512_set1_epi64(k1);
    for (int v = 0; v < kVecs; ++v) {
      const __m512i p0 = _mm512_mul_epu32(c0[v], m0), p1 = _mm512_mul_epu32(c2[v], m1);
      c0[v] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c1[v], key0, 0x96);  // a ^ b ^ c
      c2[v] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), c3[v], key1, 0x96);
      c1[v] = p1;
      c3[v] = p0;
    }
  }
  __m512i* const words[4] = {c0, c1, c2, c3};
  for (int i = 0; i < 4; ++i)
    for (int v = 0; v < kVecs; ++v)  // vpmovqd: each lane's low half
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(&out.w[i][v * kLanes]), _mm512_cvtepi64_epi32(words[i][v]));
}
#include "philox_draws.h"
}  // namespace avx512
#pragma GCC pop_options

}  // namespace philox
