// The interface between the bindings (bindings.cpp: ATen, pybind11, threads) and the four builds of the
// kernels (isa_portable.cpp, isa_avx2.cpp, isa_avx512bw.cpp, isa_avx512.cpp: plain C++ and intrinsics,
// each compiled for its instruction set). Only plain structs and declarations here: the kernel files include it
// after their `#pragma GCC target`, and an inline function defined here would be compiled once per
// instruction set and merged by the linker (an AVX-512 copy could then run on a CPU without it).
//
// Packed format (suite/kernels/packing.py documents it for Python):
//  - a row of K values is ceil(K / 64) 64-bit words; bit j (least significant first) of word w holds
//    value 64 w + j; bits past K are 0;
//  - signs: bit 1 = negative (sign(x) = -1), bit 0 = +1 (x >= 0, -0.0 included: sign(0) = +1);
//  - k-bit unsigned codes: k bit planes, plane p holding bit p of each code;
//  - a "panel" operand (the B of a GEMM) is the same words re-laid for the micro-kernels: panels of
//    kNR = 32 rows, word w of the 32 rows adjacent: panel[plane][w][lane] (rows past N are 0).
#pragma once
// The structs are plain aggregates without member initializers (an implicit constructor is an inline
// function too); the bindings value-initialize them (`Gemm g{}`: every field 0) and set what they use.

#include <stdint.h>

namespace lowbit {

constexpr int64_t kNR = 32;  // rows of B per panel (columns of the product) = one micro-kernel tile

// kXor: signs x signs. kAnd: unsigned codes, bit plane by bit plane. kXorMaskA / kXorMaskB: signs some of
// which are 0 (dropout after the sign), as two planes on the A / B side, signs then "nonzero" bits:
// popcount((a xor b) and mask), I = popcount(mask) - 2 U (a masked-out value contributes 0).
enum Op : int { kXor = 0, kAnd = 1, kXorMaskA = 2, kXorMaskB = 3 };

// C = epilogue(U), U[i][j] = sum_{p < a_planes, q < b_planes} 2^(p+q) sum_w popcount(A_p[i][w] op B_q[j][w]).
// Integer part: I = c0 + c1 U + crow rowsum[i] + ccol colsum[j]  (rowsum/colsum may be null when their
// coefficient is 0). Output: int32 I (out_i), or float I * rs[i] * cs[j] * scale + rb[i] + cb[j]
// (out_f; each vector may be null: 1 or 0). Output address of (i, j): ldo i + (j / img_cols) img_stride
// + j % img_cols (a linear layer: img_cols = n; a convolution: columns are the batch's positions).
// Or (out_bits, products only) signs packed for the next layer: bit j of row i = (I < thr[j]) xor flip[j]
// (1 = -1: an inference model's BatchNorm and sign folded into an integer threshold per output), as 32-bit
// halves of the packed words, ldb of them per row (a panel of 32 columns writes one: no two tasks share one).
struct Epilogue {
  int64_t c0, c1, crow, ccol;
  const int32_t* rowsum;
  const int32_t* colsum;
  int32_t* out_i;
  float* out_f;
  const float* rs;
  const float* cs;
  float scale;
  const float* rb;
  const float* cb;
  int64_t ldo, img_cols, img_stride;
  uint32_t* out_bits;
  const int32_t* thr;
  const int32_t* flip;
  int64_t ldb;
};

struct Gemm {
  int op;
  const uint64_t* a;  // a_planes x m rows x lda words
  int64_t lda, a_plane_stride;
  int a_planes;
  const uint64_t* b;  // panels: ceil(n / kNR) x b_planes x kw x kNR words
  int64_t b_panel_stride, b_plane_stride;
  int b_planes;
  int64_t m, n, kw;  // kw: words per row
  Epilogue ep;
};

// A convolution as a GEMM: A = the packed weights (rows = output channels of a group), B = the packed
// input's patches (im2col), built per panel of kNR output positions in the kernel (never materialized).
// Packed input: (N, H, W, G, planes, wc) words: per pixel and group, `planes` planes of wc words over the
// group's cg channels. Packed weights: planes_w x (G Og) rows x (kh kw wc) words, tap-major
// (tap t = ky kw + kx), channels within a tap. Zero padding: a padded position packs as 0 words
// (+1 for signs, code 0 for codes); for signs the kernel subtracts what those +1 added:
// sum over the padded taps t of tap_sums[o][t] (= sum_c sign(W[o, c, t])). Codes need nothing (0 * w = 0).
struct Conv {
  int op;
  const uint64_t* x;
  int64_t batch, h, w, groups, x_planes, wc, cg;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
  const uint64_t* wt;
  int64_t out_channels, w_plane_stride;
  int w_planes;
  const int32_t* tap_sums;  // (out_channels, kh kw) for signs with padding, else null
  bool need_colsum;          // sum of the input codes over each patch (I's ccol term)
  int colsum_plane;          // -1: sum_p 2^p popcount(plane p); p >= 0: popcount of plane p alone (a mask)
  Epilogue ep;  // rows = output channels (rs, rb per channel); out (N, out_channels, oh, ow)
};

// One instruction set's build of the kernels. The bindings split the work into tasks and call these
// on torch's threads (each call serves the half-open range [begin, end) of tasks).
struct Kernels {
  const char* name;
  bool compiled;  // false: this build has no code for that instruction set (another architecture)
  // rows of a (rows x len) float tensor with strides (row_stride, elem_stride) -> words (rows x nw):
  // mode 0 the sign bits, mode 1 the nonzero bits
  void (*pack_signs_f32)(const float* x, int64_t len, int64_t row_stride, int64_t elem_stride,
                         uint64_t* out, int64_t nw, int64_t begin, int64_t end, int mode);
  void (*pack_signs_f64)(const double* x, int64_t len, int64_t row_stride, int64_t elem_stride,
                         uint64_t* out, int64_t nw, int64_t begin, int64_t end);
  // contiguous rows (rows x len) -> their signs copysign(1, x + 0) as floats and as packed words, one pass
  void (*sign_pack_f32)(const float* x, int64_t len, float* signs, uint64_t* out, int64_t nw, int64_t begin,
                        int64_t end);
  // codes c = clamp(round(x scale + offset), 0, 2^bits - 1) -> planes (bits x rows x nw), plane stride ps
  void (*pack_codes_f32)(const float* x, int64_t len, int64_t row_stride, int64_t elem_stride, int bits,
                         float scale, float offset, uint64_t* out, int64_t nw, int64_t ps, int64_t begin,
                         int64_t end);
  // NCHW float -> (N, H, W, G, planes, wc) words; bits = 0: signs; -1: signs and nonzero bits (2 planes);
  // tasks = N x G x ceil(H W / 16)
  void (*pack_nchw_f32)(const float* x, int64_t c, int64_t hw, int64_t groups, int bits, float scale,
                        float offset, uint64_t* out, int64_t wc, int64_t begin, int64_t end);
  // rows (planes x n x nw, plane stride ps) -> panels (ceil(n / kNR) x planes x nw x kNR); tasks = panels
  void (*to_panels)(const uint64_t* rows, int64_t n, int64_t nw, int planes, int64_t ps, uint64_t* out,
                    int64_t begin, int64_t end);
  // sum_p 2^p popcount(row p) for rows of planes (planes x rows x nw, plane stride ps); tasks = rows
  void (*plane_sums)(const uint64_t* rows, int64_t nw, int planes, int64_t ps, int32_t* out, int64_t begin,
                     int64_t end);
  void (*gemm)(const Gemm& g, int64_t begin, int64_t end);  // tasks = panels of B
  void (*conv)(const Conv& c, int64_t begin, int64_t end);  // tasks = groups x panels of positions
};

extern const Kernels kPortable;
extern const Kernels kAvx2;
extern const Kernels kAvx512bw;
extern const Kernels kAvx512;

// Not kernels: a tile's own instructions on registers alone, for a benchmark's bound on what those
// instructions allow (-1 where that build has no code); each returns a sum, so that the work cannot be
// left out. AVX-512 (isa_avx512.cpp): `tile_words` times per word 16 x xor, popcount, add. AVX2
// (isa_avx2.cpp): `group_words` times the split tile's vector rows on one word of 4 lanes (B's nibble
// split, then 6 x (2 xor, 2 vpshufb, 2 byte adds)), the byte counters summed every 16 words; the
// tile's 7th, scalar row runs on the integer units beside them and is left out.
int64_t avx512_register_loop(int64_t tile_words, uint64_t seed);
int64_t avx2_register_loop(int64_t group_words, uint64_t seed);

}  // namespace lowbit
