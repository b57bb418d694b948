// The kernels, written once and compiled three times (isa_portable.cpp, isa_avx2.cpp, isa_avx512.cpp),
// each of which defines, before including this file:
//   kMR                                   rows of A per micro-kernel tile (columns: kNR = 32)
//   tile_kernel<MR, OP>(a, lda, b, kw, t, shift, add, moff)
//       t[r][l] (+)= popcount-sum over the kw words of (A row r) OP (panel lane l), shifted left by
//       `shift`, for r < MR, l < kNR, as int32 (the micro-kernel: the only code that differs by
//       instruction set; the bindings check that every integer fits 31 bits); the masked ops read the
//       mask `moff` words after a (kXorMaskA) or b (kXorMaskB), laid out alike
//   sign_word_f32(p)                      the 64 sign bits of 64 contiguous floats (bit j: p[j] + 0 < 0)
//   LB_FUSED_TILE (optional)              tile_fused<MR, OP>(a, lda, b, kw, e, i0, j0, off, moff): a full tile
//       whose epilogue is the simple one (`simple_epilogue`) computed from the registers and stored at
//       output offset off + ldo i (what tile_kernel + epilogue would store, bit for bit)
//   LB_KERNELS_NAME                       the Kernels table's name in lowbit.h
// Everything sits in an anonymous namespace: nothing here is shared between the three builds (see
// lowbit.h on why that matters). No C++ standard library either, for the same reason.
//
// Structure (BLIS-like, with bits): B is in panels of 32 rows (lanes), A rows are broadcast word by
// word; a tile of MR x 32 dot products stays in registers over the whole K loop, so that no horizontal
// sum is ever needed. A convolution builds its panels of patches from the packed input on the fly
// (an implicit im2col, one 32-position panel at a time, in L1), and corrects for zero padding in the
// epilogue. The layout of B (K-major, lanes = columns) follows the published kernel of Nardini, Rulli,
// Trani, Venturini, "Neural network compression using binarization and few full-precision weights"
// (Information Sciences 2025; github CosimoRulli/elbm); the padding correction follows Larq Compute
// Engine's binary convolution (github larq/compute-engine, "zero padding correction").

namespace {

using lowbit::Conv;
using lowbit::Epilogue;
using lowbit::Gemm;
using lowbit::kNR;

inline int64_t lb_min(int64_t a, int64_t b) { return a < b ? a : b; }

// Round half to even (torch.round's rule) without libm: adding 1.5 * 2^23 leaves no fraction bits
// in a float of magnitude below 2^22, and IEEE addition rounds to nearest even.
inline int64_t round_code(float v, int64_t top) {
  if (!(v > -1.0f)) return 0;  // NaN and below -1: code 0
  if (v > static_cast<float>(top) + 1.0f) return top;
  const float magic = 12582912.0f;  // 1.5 * 2^23
  const float r = v + magic;  // (built without -ffast-math: the two additions are kept)
  const int64_t c = static_cast<int64_t>(r - magic);
  return c < 0 ? 0 : (c > top ? top : c);
}

inline uint64_t sign_bit_f32(float v) {
  float z = v + 0.0f;  // -0.0 + 0 = +0: sign(0) = +1
  uint32_t u;
  __builtin_memcpy(&u, &z, 4);
  return u >> 31;
}

inline uint64_t sign_bit_f64(double v) {
  double z = v + 0.0;
  uint64_t u;
  __builtin_memcpy(&u, &z, 8);
  return u >> 63;
}

// ---- packing ---------------------------------------------------------------------------------------

inline uint64_t nonzero_bit_f32(float v) { return v != 0.0f ? 1u : 0u; }

void pack_signs_f32(const float* x, int64_t len, int64_t rs, int64_t es, uint64_t* out, int64_t nw,
                    int64_t begin, int64_t end, int mode) {
  for (int64_t r = begin; r < end; ++r) {
    const float* row = x + r * rs;
    uint64_t* o = out + r * nw;
    for (int64_t w = 0; w < nw; ++w) {
      const int64_t j0 = 64 * w, n = lb_min(64, len - j0);
      if (es == 1 && n == 64 && mode == 0) {
        o[w] = sign_word_f32(row + j0);
        continue;
      }
      uint64_t bits = 0;
      if (mode == 0)
        for (int64_t j = 0; j < n; ++j) bits |= sign_bit_f32(row[(j0 + j) * es]) << j;
      else
        for (int64_t j = 0; j < n; ++j) bits |= nonzero_bit_f32(row[(j0 + j) * es]) << j;
      o[w] = bits;
    }
  }
}

// A weight matrix's signs, as the float +-1 the backward pass multiplies by and as the bits the forward
// pass multiplies with, reading it once.
void sign_pack_f32(const float* x, int64_t len, float* signs, uint64_t* out, int64_t nw, int64_t begin,
                   int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float* row = x + r * len;
    float* s = signs + r * len;
    uint64_t* o = out + r * nw;
    for (int64_t w = 0; w < nw; ++w) {
      const int64_t j0 = 64 * w, n = lb_min(64, len - j0);
      uint64_t bits = 0;
      if (n == 64) {
        bits = sign_word_f32(row + j0);
      } else {
        for (int64_t j = 0; j < n; ++j) bits |= sign_bit_f32(row[j0 + j]) << j;
      }
      o[w] = bits;
      for (int64_t j = 0; j < n; ++j) s[j0 + j] = __builtin_copysignf(1.0f, row[j0 + j] + 0.0f);
    }
  }
}

void pack_signs_f64(const double* x, int64_t len, int64_t rs, int64_t es, uint64_t* out, int64_t nw,
                    int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const double* row = x + r * rs;
    uint64_t* o = out + r * nw;
    for (int64_t w = 0; w < nw; ++w) {
      const int64_t j0 = 64 * w, n = lb_min(64, len - j0);
      uint64_t bits = 0;
      for (int64_t j = 0; j < n; ++j) bits |= sign_bit_f64(row[(j0 + j) * es]) << j;
      o[w] = bits;
    }
  }
}

void pack_codes_f32(const float* x, int64_t len, int64_t rs, int64_t es, int bits, float scale, float offset,
                    uint64_t* out, int64_t nw, int64_t ps, int64_t begin, int64_t end) {
  const int64_t top = (int64_t(1) << bits) - 1;
  for (int64_t r = begin; r < end; ++r) {
    const float* row = x + r * rs;
    for (int64_t w = 0; w < nw; ++w) {
      const int64_t j0 = 64 * w, n = lb_min(64, len - j0);
      uint64_t planes[16] = {0};
      for (int64_t j = 0; j < n; ++j) {
        const uint64_t c = static_cast<uint64_t>(round_code(row[(j0 + j) * es] * scale + offset, top));
        for (int p = 0; p < bits; ++p) planes[p] |= ((c >> p) & 1u) << j;
      }
      for (int p = 0; p < bits; ++p) out[p * ps + r * nw + w] = planes[p];
    }
  }
}

// NCHW -> (N, H W, G, planes, wc) words, 16 pixels a task: the inner loop runs over contiguous pixels
// of one channel plane, so it reads memory in order and vectorizes.
constexpr int64_t kPixBlock = 16;

void pack_nchw_f32(const float* x, int64_t c, int64_t hw, int64_t groups, int bits, float scale, float offset,
                   uint64_t* out, int64_t wc, int64_t begin, int64_t end) {
  const int64_t cg = c / groups, planes = bits > 0 ? bits : (bits ? 2 : 1), blocks = (hw + kPixBlock - 1) / kPixBlock;
  const int64_t top = bits > 0 ? (int64_t(1) << bits) - 1 : 1;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / (groups * blocks), g = (task / blocks) % groups, p0 = (task % blocks) * kPixBlock;
    const int64_t nq = lb_min(kPixBlock, hw - p0);
    for (int64_t cw = 0; cw < wc; ++cw) {
      uint64_t acc[16][kPixBlock];
      for (int64_t p = 0; p < planes; ++p)
        for (int64_t q = 0; q < kPixBlock; ++q) acc[p][q] = 0;
      const int64_t nj = lb_min(64, cg - 64 * cw);
      for (int64_t j = 0; j < nj; ++j) {
        const float* src = x + (n * c + g * cg + 64 * cw + j) * hw + p0;
        if (bits <= 0) {
          for (int64_t q = 0; q < nq; ++q) acc[0][q] |= sign_bit_f32(src[q]) << j;
          if (bits < 0)
            for (int64_t q = 0; q < nq; ++q) acc[1][q] |= nonzero_bit_f32(src[q]) << j;
        } else {
          for (int64_t q = 0; q < nq; ++q) {
            const uint64_t code = static_cast<uint64_t>(round_code(src[q] * scale + offset, top));
            for (int64_t p = 0; p < planes; ++p) acc[p][q] |= ((code >> p) & 1u) << j;
          }
        }
      }
      for (int64_t q = 0; q < nq; ++q) {
        uint64_t* dst = out + (((n * hw + p0 + q) * groups + g) * planes) * wc + cw;
        for (int64_t p = 0; p < planes; ++p) dst[p * wc] = acc[p][q];
      }
    }
  }
}

void to_panels(const uint64_t* rows, int64_t n, int64_t nw, int planes, int64_t ps, uint64_t* out, int64_t begin,
               int64_t end) {
  for (int64_t panel = begin; panel < end; ++panel) {
    for (int p = 0; p < planes; ++p) {
      uint64_t* dst = out + (panel * planes + p) * nw * kNR;
      for (int64_t l = 0; l < kNR; ++l) {
        const int64_t row = panel * kNR + l;
        const uint64_t* src = rows + p * ps + row * nw;
        if (row < n)
          for (int64_t w = 0; w < nw; ++w) dst[w * kNR + l] = src[w];
        else
          for (int64_t w = 0; w < nw; ++w) dst[w * kNR + l] = 0;
      }
    }
  }
}

void plane_sums(const uint64_t* rows, int64_t nw, int planes, int64_t ps, int32_t* out, int64_t begin,
                int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    int64_t s = 0;
    for (int p = 0; p < planes; ++p) {
      int64_t c = 0;
      for (int64_t w = 0; w < nw; ++w) c += __builtin_popcountll(rows[p * ps + r * nw + w]);
      s += c << p;
    }
    out[r] = static_cast<int32_t>(s);
  }
}

// ---- GEMM ----------------------------------------------------------------------------------------------

// t (mr x kNR) = sum over plane pairs of 2^(p+q) popcounts: one tile of U.
template <int MR>
void tile_all_planes(int op, const uint64_t* a, int64_t lda, int64_t a_ps, int a_planes, const uint64_t* b,
                     int64_t b_ps, int b_planes, int64_t kw, int32_t* t) {
  if (op == lowbit::kXor) {
    tile_kernel<MR, lowbit::kXor>(a, lda, b, kw, t, 0, false, 0);
  } else if (op == lowbit::kXorMaskA) {
    tile_kernel<MR, lowbit::kXorMaskA>(a, lda, b, kw, t, 0, false, a_ps);
  } else if (op == lowbit::kXorMaskB) {
    tile_kernel<MR, lowbit::kXorMaskB>(a, lda, b, kw, t, 0, false, b_ps);
  } else {
    for (int p = 0; p < a_planes; ++p)
      for (int q = 0; q < b_planes; ++q)
        tile_kernel<MR, lowbit::kAnd>(a + p * a_ps, lda, b + q * b_ps, kw, t, p + q, p + q > 0, 0);
  }
}

template <int MR>
struct TileDispatch {
  static void run(int mr, int op, const uint64_t* a, int64_t lda, int64_t a_ps, int a_planes, const uint64_t* b,
                  int64_t b_ps, int b_planes, int64_t kw, int32_t* t) {
    if (mr == MR)
      tile_all_planes<MR>(op, a, lda, a_ps, a_planes, b, b_ps, b_planes, kw, t);
    else
      TileDispatch<MR - 1>::run(mr, op, a, lda, a_ps, a_planes, b, b_ps, b_planes, kw, t);
  }
};

template <>
struct TileDispatch<0> {
  static void run(int, int, const uint64_t*, int64_t, int64_t, int, const uint64_t*, int64_t, int, int64_t,
                  int32_t*) {}
};

// Where a tile's lanes go in the output: runs of lanes contiguous in memory (a convolution's columns
// cross from one image to the next within a panel), computed once per tile, not per row.
struct Runs {
  int64_t n;
  int64_t first[kNR], len[kNR], off[kNR];
};

void output_runs(const Epilogue& e, int64_t j0, int64_t nvalid, Runs& runs) {
  runs.n = 0;
  for (int64_t l = 0; l < nvalid;) {
    const int64_t j = j0 + l, img = j / e.img_cols, pos = j - img * e.img_cols;
    const int64_t len = lb_min(nvalid - l, e.img_cols - pos);
    runs.first[runs.n] = l;
    runs.len[runs.n] = len;
    runs.off[runs.n] = img * e.img_stride + pos;
    ++runs.n;
    l += len;
  }
}

// The integer epilogue and the store of one tile (rows i0.., lanes j0.., nvalid of them). colsum and sub
// are indexed by lane (sub: mr x kNR, subtracted from I; may be null). int32 throughout: the loops over
// the 32 lanes vectorize.
void epilogue(const Epilogue& e, const int32_t* t, int64_t i0, int mr, int64_t j0, int64_t nvalid,
              const int32_t* colsum, const int32_t* sub, const Runs& runs) {
  const int32_t c1 = static_cast<int32_t>(e.c1), ccol = static_cast<int32_t>(e.ccol);
  for (int r = 0; r < mr; ++r) {
    const int64_t i = i0 + r;
    const int32_t base = static_cast<int32_t>(e.c0 + (e.rowsum ? e.crow * e.rowsum[i] : 0));
    alignas(64) int32_t v[kNR];
    const int32_t* tr = t + r * kNR;
    for (int64_t l = 0; l < kNR; ++l) v[l] = base + c1 * tr[l];
    if (colsum)
      for (int64_t l = 0; l < kNR; ++l) v[l] += ccol * colsum[l];
    if (sub)
      for (int64_t l = 0; l < kNR; ++l) v[l] -= sub[r * kNR + l];
    if (e.out_bits) {
      uint32_t bits = 0;
      for (int64_t l = 0; l < nvalid; ++l)
        bits |= static_cast<uint32_t>((v[l] < e.thr[j0 + l]) != (e.flip[j0 + l] != 0)) << l;
      e.out_bits[e.ldb * i + j0 / kNR] = bits;
      continue;
    }
    const float rsi = (e.rs ? e.rs[i] : 1.0f) * e.scale, rbi = e.rb ? e.rb[i] : 0.0f;
    for (int64_t q = 0; q < runs.n; ++q) {
      const int64_t l0 = runs.first[q], run = runs.len[q], off = e.ldo * i + runs.off[q];
      const int32_t* vr = v + l0;
      if (e.out_i) {
        int32_t* o = e.out_i + off;
        for (int64_t u = 0; u < run; ++u) o[u] = vr[u];
        continue;
      }
      float* o = e.out_f + off;
      const float* cs = e.cs ? e.cs + j0 + l0 : nullptr;
      const float* cb = e.cb ? e.cb + j0 + l0 : nullptr;
      if (!cs && !cb) {
        for (int64_t u = 0; u < run; ++u) o[u] = static_cast<float>(vr[u]) * rsi + rbi;
      } else if (cs && cb) {
        for (int64_t u = 0; u < run; ++u) o[u] = static_cast<float>(vr[u]) * rsi * cs[u] + rbi + cb[u];
      } else if (cs) {
        for (int64_t u = 0; u < run; ++u) o[u] = static_cast<float>(vr[u]) * rsi * cs[u] + rbi;
      } else {
        for (int64_t u = 0; u < run; ++u) o[u] = static_cast<float>(vr[u]) * rsi + rbi + cb[u];
      }
    }
  }
}

#ifdef LB_FUSED_TILE
template <int MR>
struct FusedDispatch {
  static void run(int mr, int op, const uint64_t* a, int64_t lda, const uint64_t* b, int64_t kw, const Epilogue& e,
                  int64_t i0, int64_t j0, int64_t off, int64_t moff) {
    if (mr != MR) return FusedDispatch<MR - 1>::run(mr, op, a, lda, b, kw, e, i0, j0, off, moff);
    if (op == lowbit::kXor)
      tile_fused<MR, lowbit::kXor>(a, lda, b, kw, e, i0, j0, off, 0);
    else if (op == lowbit::kXorMaskA)
      tile_fused<MR, lowbit::kXorMaskA>(a, lda, b, kw, e, i0, j0, off, moff);
    else
      tile_fused<MR, lowbit::kAnd>(a, lda, b, kw, e, i0, j0, off, 0);
  }
};

template <>
struct FusedDispatch<0> {
  static void run(int, int, const uint64_t*, int64_t, const uint64_t*, int64_t, const Epilogue&, int64_t, int64_t,
                  int64_t, int64_t) {}
};
#endif

// The epilogue a fused tile can do from its registers: no column sums, corrections or bits.
[[maybe_unused]] bool simple_epilogue(const Epilogue& e) { return !e.colsum && !e.out_bits; }

void gemm(const Gemm& g, int64_t begin, int64_t end) {
  alignas(64) int32_t tile[kMR * kNR];
  Runs runs;
#ifdef LB_FUSED_TILE
  const bool fusable = simple_epilogue(g.ep) && (g.op == lowbit::kXor || g.op == lowbit::kXorMaskA ||
                                                 (g.op == lowbit::kAnd && g.a_planes == 1 && g.b_planes == 1));
#endif
  for (int64_t panel = begin; panel < end; ++panel) {
    const uint64_t* bp = g.b + panel * g.b_panel_stride;
    const int64_t j0 = panel * kNR, nvalid = lb_min(kNR, g.n - j0);
    const int32_t* colsum = g.ep.colsum ? g.ep.colsum + j0 : nullptr;
    output_runs(g.ep, j0, nvalid, runs);
    for (int64_t i0 = 0; i0 < g.m; i0 += kMR) {
      const int mr = static_cast<int>(lb_min(kMR, g.m - i0));
#ifdef LB_FUSED_TILE
      if (fusable && runs.n == 1 && nvalid == kNR) {
        FusedDispatch<kMR>::run(mr, g.op, g.a + i0 * g.lda, g.lda, bp, g.kw, g.ep, i0, j0, runs.off[0],
                                g.a_plane_stride);
        continue;
      }
#endif
      TileDispatch<kMR>::run(mr, g.op, g.a + i0 * g.lda, g.lda, g.a_plane_stride, g.a_planes, bp, g.b_plane_stride,
                             g.b_planes, g.kw, tile);
      epilogue(g.ep, tile, i0, mr, j0, nvalid, colsum, nullptr, runs);
    }
  }
}

// ---- convolution -------------------------------------------------------------------------------------

void conv(const Conv& c, int64_t begin, int64_t end) {
  const int64_t taps = c.kh * c.kw, kwords = taps * c.wc, planes = c.x_planes;
  const int64_t positions = c.oh * c.ow, npos = c.batch * positions, npanels = (npos + kNR - 1) / kNR;
  const int64_t og = c.out_channels / c.groups, mw = (taps + 63) / 64, pix = c.groups * planes * c.wc;
  // per-call scratch (a C allocation: no C++ library in this file)
  uint64_t* panel = static_cast<uint64_t*>(__builtin_malloc(sizeof(uint64_t) * (planes * kwords * kNR + kNR * mw)));
  int32_t* sub = static_cast<int32_t*>(__builtin_malloc(sizeof(int32_t) * (kMR * kNR)));
  uint64_t* mask = panel + planes * kwords * kNR;  // kNR x mw: which taps of each lane fall in the padding
  alignas(64) int32_t tile[kMR * kNR];
  alignas(64) int32_t colsum[kNR];
  Runs runs;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t g = task / npanels, pnl = task % npanels, j0 = pnl * kNR, nvalid = lb_min(kNR, npos - j0);
    bool padded = false;
    for (int64_t l = 0; l < kNR * mw; ++l) mask[l] = 0;
    for (int64_t l = 0; l < kNR; ++l) {
      const int64_t j = j0 + l;
      const int64_t img = j / positions, pos = j % positions, oy = pos / c.ow, ox = pos % c.ow;
      for (int64_t ky = 0; ky < c.kh; ++ky) {
        const int64_t iy = oy * c.sh - c.ph + ky * c.dh;
        for (int64_t kx = 0; kx < c.kw; ++kx) {
          const int64_t ix = ox * c.sw - c.pw + kx * c.dw, t = ky * c.kw + kx;
          const bool inside = j < npos && iy >= 0 && iy < c.h && ix >= 0 && ix < c.w;
          const uint64_t* src = inside ? c.x + ((img * c.h + iy) * c.w + ix) * pix + g * planes * c.wc : nullptr;
          for (int64_t p = 0; p < planes; ++p) {
            uint64_t* dst = panel + (p * kwords + t * c.wc) * kNR + l;
            for (int64_t cw = 0; cw < c.wc; ++cw) dst[cw * kNR] = inside ? src[p * c.wc + cw] : 0;
          }
          if (!inside && j < npos) {
            mask[l * mw + t / 64] |= uint64_t(1) << (t % 64);
            padded = true;
          }
        }
      }
    }
    if (c.need_colsum) {
      const int64_t p0 = c.colsum_plane < 0 ? 0 : c.colsum_plane, p1 = c.colsum_plane < 0 ? planes : p0 + 1;
      for (int64_t l = 0; l < kNR; ++l) {
        int64_t s = 0;
        for (int64_t p = p0; p < p1; ++p) {
          int64_t n1 = 0;
          for (int64_t w = 0; w < kwords; ++w) n1 += __builtin_popcountll(panel[(p * kwords + w) * kNR + l]);
          s += c.colsum_plane < 0 ? n1 << p : n1;
        }
        colsum[l] = static_cast<int32_t>(s);
      }
    }
    const bool correct = padded && c.tap_sums;
    output_runs(c.ep, j0, nvalid, runs);
    for (int64_t o0 = 0; o0 < og; o0 += kMR) {
      const int mr = static_cast<int>(lb_min(kMR, og - o0));
      const int64_t row0 = g * og + o0;
      TileDispatch<kMR>::run(mr, c.op, c.wt + row0 * kwords, kwords, c.w_plane_stride, c.w_planes, panel,
                             kwords * kNR, static_cast<int>(planes), kwords, tile);
      if (correct) {
        for (int r = 0; r < mr; ++r) {
          const int32_t* s = c.tap_sums + (row0 + r) * taps;
          for (int64_t l = 0; l < kNR; ++l) {
            int32_t corr = 0;
            for (int64_t q = 0; q < mw; ++q)
              for (uint64_t m = mask[l * mw + q]; m; m &= m - 1) corr += s[q * 64 + __builtin_ctzll(m)];
            sub[r * kNR + l] = corr;
          }
        }
      }
      epilogue(c.ep, tile, row0, mr, j0, nvalid, c.need_colsum ? colsum : nullptr, correct ? sub : nullptr, runs);
    }
  }
  __builtin_free(sub);
  __builtin_free(panel);
}

}  // namespace

namespace lowbit {
const Kernels LB_KERNELS_NAME = {LB_ISA_NAME,    true,           pack_signs_f32, pack_signs_f64, sign_pack_f32,
                                 pack_codes_f32, pack_nchw_f32, to_panels,      plane_sums,     gemm, conv};
}  // namespace lowbit
