// The portable build of the kernels (any CPU; kernels_impl.h explains the structure): plain C++, the
// compiler's popcount. The reference the two vector builds are tested against.
#include <stdint.h>

#include "lowbit.h"

#define LB_KERNELS_NAME kPortable
#define LB_ISA_NAME "portable"

namespace {

using lowbit::kNR;

constexpr int64_t kMR = 4;

template <int MR, int OP>
void tile_kernel(const uint64_t* a, int64_t lda, const uint64_t* b, int64_t kw, int32_t* t, int shift, bool add,
                 int64_t moff) {
  int32_t acc[MR][kNR] = {};
  for (int64_t w = 0; w < kw; ++w) {
    const uint64_t* bw = b + w * kNR;
    const uint64_t* bm = b + moff + w * kNR;  // kXorMaskB's mask
    for (int r = 0; r < MR; ++r) {
      const uint64_t av = a[r * lda + w], am = OP == lowbit::kXorMaskA ? a[moff + r * lda + w] : ~uint64_t(0);
      for (int64_t l = 0; l < kNR; ++l) {
        uint64_t x = OP == lowbit::kAnd ? (av & bw[l]) : (av ^ bw[l]) & am;
        if (OP == lowbit::kXorMaskB) x &= bm[l];
        acc[r][l] += __builtin_popcountll(x);
      }
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int64_t l = 0; l < kNR; ++l) t[r * kNR + l] = (add ? t[r * kNR + l] : 0) + (acc[r][l] << shift);
}

uint64_t sign_word_f32(const float* p) {
  uint64_t bits = 0;
  for (int j = 0; j < 64; ++j) {
    float z = p[j] + 0.0f;
    uint32_t u;
    __builtin_memcpy(&u, &z, 4);
    bits |= static_cast<uint64_t>(u >> 31) << j;
  }
  return bits;
}

}  // namespace

#include "kernels_impl.h"
