// Python bindings of the bit-packed kernels (suite/kernels/__init__.py is the API): argument checks,
// output allocation, and the split of each call into tasks run on torch's threads (at::parallel_for,
// OpenMP). Every function takes `isa`, the index of the build to run (0 portable, 1 AVX2, 2 AVX-512BW,
// 3 AVX-512 VPOPCNTDQ); Python chooses it from the CPU's features (suite/kernels/dispatch.py).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/utils/pybind.h>

#include <atomic>
#include <optional>

#include "lowbit.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the packed words are read as 32-bit halves, low first");

namespace {

using at::Tensor;
using lowbit::kNR;

const lowbit::Kernels* builds(int64_t isa) {
  static const lowbit::Kernels* all[] = {&lowbit::kPortable, &lowbit::kAvx2, &lowbit::kAvx512bw, &lowbit::kAvx512};
  return isa >= 0 && isa < 4 ? all[isa] : nullptr;
}

const lowbit::Kernels& build(int64_t isa) {
  const lowbit::Kernels* k = builds(isa);
  TORCH_CHECK(k && k->compiled, "no kernels built for instruction set ", isa, " on this architecture");
  return *k;
}

pybind11::dict cpu_features() {
  pybind11::dict d;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  d["avx2"] = bool(__builtin_cpu_supports("avx2"));
  d["avx512f"] = bool(__builtin_cpu_supports("avx512f"));
  d["avx512bw"] = bool(__builtin_cpu_supports("avx512bw"));
  d["avx512vpopcntdq"] = bool(__builtin_cpu_supports("avx512vpopcntdq"));
#else
  d["avx2"] = false;
  d["avx512f"] = false;
  d["avx512bw"] = false;
  d["avx512vpopcntdq"] = false;
#endif
  return d;
}

// Tasks of about `work` units each run in chunks of at least 2^15 units: a small call stays on one
// thread (a parallel region costs microseconds), a large one uses every thread. The threads take chunks
// from a shared counter rather than a fixed share each: a thread the machine delays for a while (a
// virtual CPU descheduled, an interrupt) leaves its chunks to the others instead of holding up the call.
void run(int64_t tasks, int64_t work, const std::function<void(int64_t, int64_t)>& f) {
  if (tasks <= 0) return;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(work, 1));
  if (grain >= tasks) {
    f(0, tasks);
    return;
  }
  const int64_t chunks = (tasks + grain - 1) / grain;
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(chunks, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < chunks;
         c = next.fetch_add(1, std::memory_order_relaxed))
      f(c * grain, std::min(tasks, (c + 1) * grain));
  });
}

int64_t words_for(int64_t len) { return (len + 63) / 64; }

const uint64_t* words_ptr(const Tensor& t) { return reinterpret_cast<const uint64_t*>(t.const_data_ptr<int64_t>()); }
uint64_t* words_ptr_mut(Tensor& t) { return reinterpret_cast<uint64_t*>(t.data_ptr<int64_t>()); }

void check_words(const Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kLong && t.is_contiguous() && t.dim() == dim, name,
              " must be a contiguous int64 CPU tensor of ", dim, " dimensions (packed words)");
}

const float* opt_f32(const std::optional<Tensor>& t, int64_t n, const char* name) {
  if (!t) return nullptr;
  TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->is_contiguous() && t->numel() == n, name,
              " must be a contiguous float32 CPU tensor of ", n, " values");
  return t->const_data_ptr<float>();
}

const int32_t* opt_i32(const std::optional<Tensor>& t, int64_t n, const char* name) {
  if (!t) return nullptr;
  TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kInt && t->is_contiguous() && t->numel() == n, name,
              " must be a contiguous int32 CPU tensor of ", n, " values");
  return t->const_data_ptr<int32_t>();
}

// (rows, len) float32/float64, any strides -> (rows, ceil(len / 64)) int64 words: the sign bits (mode 0)
// or, float32 only, the nonzero bits (mode 1: the mask of a dropped-out sign)
Tensor pack_signs(const Tensor& x, int64_t mode, int64_t isa) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2, "x must be a 2-D CPU tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, "x must be float32 or float64");
  const auto& k = build(isa);
  const int64_t rows = x.size(0), len = x.size(1), nw = words_for(len);
  auto out = at::empty({rows, nw}, x.options().dtype(at::kLong));
  uint64_t* o = words_ptr_mut(out);
  const int64_t rs = x.stride(0), es = x.stride(1);
  TORCH_CHECK(mode == 0 || (mode == 1 && x.scalar_type() == at::kFloat), "mode 1 (nonzero bits) takes float32");
  if (x.scalar_type() == at::kFloat) {
    const float* p = x.const_data_ptr<float>();
    const int m = static_cast<int>(mode);
    run(rows, len / 4 + 1, [&](int64_t b, int64_t e) { k.pack_signs_f32(p, len, rs, es, o, nw, b, e, m); });
  } else {
    const double* p = x.const_data_ptr<double>();
    run(rows, len / 4 + 1, [&](int64_t b, int64_t e) { k.pack_signs_f64(p, len, rs, es, o, nw, b, e); });
  }
  return out;
}

// contiguous (rows, len) float32 -> (its signs copysign(1, x + 0), their packed words (rows, nw)), one read of x
std::tuple<Tensor, Tensor> sign_pack(const Tensor& x, int64_t isa) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(),
              "x must be a contiguous 2-D float32 CPU tensor");
  const auto& k = build(isa);
  const int64_t rows = x.size(0), len = x.size(1), nw = words_for(len);
  auto signs = at::empty_like(x);
  auto out = at::empty({rows, nw}, x.options().dtype(at::kLong));
  const float* p = x.const_data_ptr<float>();
  float* s = signs.data_ptr<float>();
  uint64_t* o = words_ptr_mut(out);
  run(rows, len / 2 + 1, [&](int64_t b, int64_t e) { k.sign_pack_f32(p, len, s, o, nw, b, e); });
  return {signs, out};
}

// (rows, len) float32 -> (bits, rows, nw) planes of the codes clamp(round(x scale + offset), 0, 2^bits - 1)
Tensor pack_codes(const Tensor& x, int64_t bits, double scale, double offset, int64_t isa) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2 && x.scalar_type() == at::kFloat, "x must be a 2-D float32 CPU tensor");
  TORCH_CHECK(bits >= 1 && bits <= 16, "bits must be in 1..16");
  const auto& k = build(isa);
  const int64_t rows = x.size(0), len = x.size(1), nw = words_for(len);
  auto out = at::empty({bits, rows, nw}, x.options().dtype(at::kLong));
  uint64_t* o = words_ptr_mut(out);
  const float* p = x.const_data_ptr<float>();
  const int64_t rs = x.stride(0), es = x.stride(1);
  run(rows, len * bits / 4 + 1, [&](int64_t b, int64_t e) {
    k.pack_codes_f32(p, len, rs, es, static_cast<int>(bits), static_cast<float>(scale), static_cast<float>(offset), o,
                     nw, rows * nw, b, e);
  });
  return out;
}

// (N, C, H, W) float32 -> (N, H, W, G, planes, wc) words, wc = ceil(C / G / 64); bits = 0: signs; -1: signs
// and nonzero bits (2 planes)
Tensor pack_nchw(const Tensor& x, int64_t groups, int64_t bits, double scale, double offset, int64_t isa) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 4 && x.scalar_type() == at::kFloat && x.is_contiguous(),
              "x must be a contiguous (N, C, H, W) float32 CPU tensor");
  TORCH_CHECK(bits >= -1 && bits <= 16, "bits must be in -1..16");
  TORCH_CHECK(groups >= 1 && x.size(1) % groups == 0, "groups must divide the channels");
  const auto& k = build(isa);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), hw = h * w;
  const int64_t wc = words_for(c / groups), planes = bits > 0 ? bits : (bits ? 2 : 1);
  auto out = at::empty({n, h, w, groups, planes, wc}, x.options().dtype(at::kLong));
  uint64_t* o = words_ptr_mut(out);
  const float* p = x.const_data_ptr<float>();
  const int64_t tasks = n * groups * ((hw + 15) / 16);
  run(tasks, 16 * (c / groups) * planes / 4 + 1, [&](int64_t b, int64_t e) {
    k.pack_nchw_f32(p, c, hw, groups, static_cast<int>(bits), static_cast<float>(scale), static_cast<float>(offset), o,
                    wc, b, e);
  });
  return out;
}

// (planes, n, nw) rows -> (ceil(n / 32), planes, nw, 32) panels
Tensor to_panels(const Tensor& rows, int64_t isa) {
  check_words(rows, "rows", 3);
  const auto& k = build(isa);
  const int64_t planes = rows.size(0), n = rows.size(1), nw = rows.size(2), np = (n + kNR - 1) / kNR;
  auto out = at::empty({np, planes, nw, kNR}, rows.options());
  uint64_t* o = words_ptr_mut(out);
  const uint64_t* r = words_ptr(rows);
  run(np, planes * nw * kNR / 8 + 1,
      [&](int64_t b, int64_t e) { k.to_panels(r, n, nw, static_cast<int>(planes), n * nw, o, b, e); });
  return out;
}

// (planes, rows, nw) -> int32 (rows): sum_p 2^p popcount(row in plane p)
Tensor plane_sums(const Tensor& rows, int64_t isa) {
  check_words(rows, "rows", 3);
  const auto& k = build(isa);
  const int64_t planes = rows.size(0), n = rows.size(1), nw = rows.size(2);
  auto out = at::empty({n}, rows.options().dtype(at::kInt));
  int32_t* o = out.data_ptr<int32_t>();
  const uint64_t* r = words_ptr(rows);
  run(n, planes * nw + 1, [&](int64_t b, int64_t e) { k.plane_sums(r, nw, static_cast<int>(planes), n * nw, o, b, e); });
  return out;
}

// Which plane counts an op takes: xor 1 and 1; the masked ops 2 (signs, mask) on their side; and any.
void check_op_planes(int64_t op, int64_t a_planes, int64_t b_planes) {
  TORCH_CHECK(op >= lowbit::kXor && op <= lowbit::kXorMaskB, "op must be 0 (xor), 1 (and), 2 or 3 (masked xor)");
  TORCH_CHECK(op == lowbit::kAnd || (a_planes == (op == lowbit::kXorMaskA ? 2 : 1) &&
                                     b_planes == (op == lowbit::kXorMaskB ? 2 : 1)),
              "op ", op, " does not take ", a_planes, " and ", b_planes, " planes");
}

void check_gemm_operands(const Tensor& a, const Tensor& b) {
  check_words(a, "a", 3);
  check_words(b, "b", 4);
  TORCH_CHECK(b.size(3) == kNR, "b must be in panels of ", kNR, " rows");
  TORCH_CHECK(a.size(2) == b.size(2), "a and b must have the same number of words per row, got ", a.size(2), " and ",
              b.size(2));
}

// The general product (lowbit.h, Gemm): a (planes_a, m, nw) rows, b (panels, planes_b, nw, 32); int32 I
// or float I rs cs scale + rb + cb, (m, n).
Tensor gemm(int64_t op, const Tensor& a, const Tensor& b, int64_t n, int64_t c0, int64_t c1, int64_t crow,
            int64_t ccol, const std::optional<Tensor>& rowsum, const std::optional<Tensor>& colsum, bool out_float,
            const std::optional<Tensor>& rs, const std::optional<Tensor>& cs, double scale,
            const std::optional<Tensor>& rb, const std::optional<Tensor>& cb, int64_t isa) {
  check_gemm_operands(a, b);
  check_op_planes(op, a.size(0), b.size(1));
  const int64_t m = a.size(1), nw = a.size(2), np = b.size(0);
  TORCH_CHECK(n >= 0 && (n + kNR - 1) / kNR == np, "b has ", np, " panels, not those of ", n, " rows");
  const auto& k = build(isa);
  lowbit::Gemm g{};
  g.op = static_cast<int>(op);
  g.a = words_ptr(a);
  g.lda = nw;
  g.a_plane_stride = m * nw;
  g.a_planes = static_cast<int>(a.size(0));
  g.b = words_ptr(b);
  g.b_plane_stride = nw * kNR;
  g.b_panel_stride = b.size(1) * nw * kNR;
  g.b_planes = static_cast<int>(b.size(1));
  g.m = m;
  g.n = n;
  g.kw = nw;
  auto& e = g.ep;
  e.c0 = c0;
  e.c1 = c1;
  e.crow = crow;
  e.ccol = ccol;
  e.rowsum = opt_i32(rowsum, m, "rowsum");
  e.colsum = opt_i32(colsum, n, "colsum");
  TORCH_CHECK((crow == 0 || e.rowsum) && (ccol == 0 || e.colsum), "a sum with a coefficient must be given");
  e.scale = static_cast<float>(scale);
  e.rs = opt_f32(rs, m, "rs");
  e.cs = opt_f32(cs, n, "cs");
  e.rb = opt_f32(rb, m, "rb");
  e.cb = opt_f32(cb, n, "cb");
  e.ldo = n;
  e.img_cols = std::max<int64_t>(n, 1);
  e.img_stride = 0;
  Tensor out = at::empty({m, n}, a.options().dtype(out_float ? at::kFloat : at::kInt));
  if (out_float)
    e.out_f = out.data_ptr<float>();
  else
    e.out_i = out.data_ptr<int32_t>();
  const int64_t pairs = op == lowbit::kAnd ? g.a_planes * g.b_planes : 1;
  run(np, m * nw * pairs * 4 + m * 8, [&](int64_t bgn, int64_t end) { k.gemm(g, bgn, end); });
  return out;
}

// The product thresholded into packed signs (lowbit.h, Epilogue.out_bits): int64 (m, ceil(n / 64)) words,
// bit j of row i = (I_ij < thr_j) xor flip_j; an inference model's BatchNorm and sign in the epilogue.
Tensor gemm_bits(int64_t op, const Tensor& a, const Tensor& b, int64_t n, int64_t c0, int64_t c1, int64_t crow,
                 int64_t ccol, const std::optional<Tensor>& rowsum, const std::optional<Tensor>& colsum,
                 const Tensor& thr, const Tensor& flip, int64_t isa) {
  check_gemm_operands(a, b);
  check_op_planes(op, a.size(0), b.size(1));
  const int64_t m = a.size(1), nw = a.size(2), np = b.size(0);
  TORCH_CHECK(n >= 0 && (n + kNR - 1) / kNR == np, "b has ", np, " panels, not those of ", n, " rows");
  const auto& k = build(isa);
  lowbit::Gemm g{};
  g.op = static_cast<int>(op);
  g.a = words_ptr(a);
  g.lda = nw;
  g.a_plane_stride = m * nw;
  g.a_planes = static_cast<int>(a.size(0));
  g.b = words_ptr(b);
  g.b_plane_stride = nw * kNR;
  g.b_panel_stride = b.size(1) * nw * kNR;
  g.b_planes = static_cast<int>(b.size(1));
  g.m = m;
  g.n = n;
  g.kw = nw;
  auto& e = g.ep;
  e.c0 = c0;
  e.c1 = c1;
  e.crow = crow;
  e.ccol = ccol;
  e.rowsum = opt_i32(rowsum, m, "rowsum");
  e.colsum = opt_i32(colsum, n, "colsum");
  TORCH_CHECK((crow == 0 || e.rowsum) && (ccol == 0 || e.colsum), "a sum with a coefficient must be given");
  e.thr = opt_i32(thr, n, "thr");
  e.flip = opt_i32(flip, n, "flip");
  const int64_t out_words = (n + 63) / 64;
  Tensor out = at::empty({m, out_words}, a.options());
  if (np % 2) out.select(1, out_words - 1).zero_();  // the upper half of the last word: no panel writes it
  e.out_bits = reinterpret_cast<uint32_t*>(out.data_ptr<int64_t>());
  e.ldb = 2 * out_words;
  e.img_cols = std::max<int64_t>(n, 1);
  const int64_t pairs = op == lowbit::kAnd ? g.a_planes * g.b_planes : 1;
  run(np, m * nw * pairs * 4 + m * 8, [&](int64_t bgn, int64_t end) { k.gemm(g, bgn, end); });
  return out;
}

// The lean path for xnor_matmul (few arguments: it is timed at batch 1 from Python): int32 (m, n) of
// k - 2 popcount(a xor b), the exact +-1 dot products of k-long sign vectors.
Tensor xnor_gemm(const Tensor& a, const Tensor& b, int64_t n, int64_t k_len, int64_t isa) {
  check_gemm_operands(a.dim() == 2 ? a.unsqueeze(0) : a, b);
  TORCH_CHECK(b.size(1) == 1, "b must hold signs (one plane)");
  const int64_t m = a.size(-2), nw = a.size(-1), np = b.size(0);
  TORCH_CHECK(n >= 0 && (n + kNR - 1) / kNR == np, "b has ", np, " panels, not those of ", n, " rows");
  const auto& k = build(isa);
  lowbit::Gemm g{};
  g.op = lowbit::kXor;
  g.a = words_ptr(a);
  g.lda = nw;
  g.a_plane_stride = m * nw;
  g.a_planes = 1;
  g.b = words_ptr(b);
  g.b_plane_stride = nw * kNR;
  g.b_panel_stride = nw * kNR;
  g.b_planes = 1;
  g.m = m;
  g.n = n;
  g.kw = nw;
  g.ep.c0 = k_len;
  g.ep.c1 = -2;
  g.ep.scale = 1.0f;
  g.ep.ldo = n;
  g.ep.img_cols = std::max<int64_t>(n, 1);
  Tensor out = at::empty({m, n}, a.options().dtype(at::kInt));
  g.ep.out_i = out.data_ptr<int32_t>();
  run(np, m * nw * 4 + m * 8, [&](int64_t bgn, int64_t end) { k.gemm(g, bgn, end); });
  return out;
}

// A packed convolution (lowbit.h, Conv): x (N, H, W, G, planes_x, wc), weights (planes_w, O, kh kw wc);
// out (N, O, oh, ow) int32 I or float I rs scale + rb.
Tensor conv(int64_t op, const Tensor& x, const Tensor& wt, int64_t cg, int64_t kh, int64_t kw,
            std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation, int64_t c0,
            int64_t c1, int64_t ccol, int64_t colsum_plane, const std::optional<Tensor>& tap_sums, bool out_float,
            const std::optional<Tensor>& rs, double scale, const std::optional<Tensor>& rb, int64_t isa) {
  check_words(x, "x", 6);
  check_words(wt, "weights", 3);
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, "stride, padding, dilation: 2 each");
  const auto& k = build(isa);
  lowbit::Conv c{};
  c.op = static_cast<int>(op);
  c.x = words_ptr(x);
  c.batch = x.size(0);
  c.h = x.size(1);
  c.w = x.size(2);
  c.groups = x.size(3);
  c.x_planes = x.size(4);
  c.wc = x.size(5);
  c.cg = cg;
  TORCH_CHECK(words_for(cg) == c.wc, "the packed input holds ", c.wc, " words per pixel, not those of ", cg,
              " channels");
  c.kh = kh;
  c.kw = kw;
  c.sh = stride[0];
  c.sw = stride[1];
  c.ph = padding[0];
  c.pw = padding[1];
  c.dh = dilation[0];
  c.dw = dilation[1];
  TORCH_CHECK(c.sh > 0 && c.sw > 0 && c.dh > 0 && c.dw > 0 && c.ph >= 0 && c.pw >= 0, "bad stride/padding/dilation");
  c.oh = (c.h + 2 * c.ph - c.dh * (kh - 1) - 1) / c.sh + 1;
  c.ow = (c.w + 2 * c.pw - c.dw * (kw - 1) - 1) / c.sw + 1;
  TORCH_CHECK(c.oh > 0 && c.ow > 0, "the kernel does not fit the padded input");
  c.wt = words_ptr(wt);
  c.w_planes = static_cast<int>(wt.size(0));
  c.out_channels = wt.size(1);
  c.w_plane_stride = wt.size(1) * wt.size(2);
  TORCH_CHECK(wt.size(2) == kh * kw * c.wc, "weights must hold kh kw wc words per row");
  TORCH_CHECK(c.out_channels % c.groups == 0, "groups must divide the output channels");
  check_op_planes(op, c.w_planes, c.x_planes);  // A = the weights, B = the input's patches
  TORCH_CHECK(op != lowbit::kXorMaskA, "a convolution's mask is on its input (op 3)");
  c.tap_sums = opt_i32(tap_sums, c.out_channels * kh * kw, "tap_sums");
  c.need_colsum = ccol != 0;
  c.colsum_plane = static_cast<int>(colsum_plane);
  TORCH_CHECK(colsum_plane >= -1 && colsum_plane < c.x_planes, "colsum_plane must be -1 or a plane of the input");
  auto& e = c.ep;
  e.c0 = c0;
  e.c1 = c1;
  e.ccol = ccol;
  e.scale = static_cast<float>(scale);
  e.rs = opt_f32(rs, c.out_channels, "rs");
  e.rb = opt_f32(rb, c.out_channels, "rb");
  const int64_t positions = c.oh * c.ow;
  e.ldo = positions;
  e.img_cols = positions;
  e.img_stride = c.out_channels * positions;
  Tensor out = at::empty({c.batch, c.out_channels, c.oh, c.ow}, x.options().dtype(out_float ? at::kFloat : at::kInt));
  if (out_float)
    e.out_f = out.data_ptr<float>();
  else
    e.out_i = out.data_ptr<int32_t>();
  const int64_t np = (c.batch * positions + kNR - 1) / kNR;
  const int64_t pairs = op == lowbit::kAnd ? c.x_planes * c.w_planes : 1;
  run(c.groups * np, (c.out_channels / c.groups) * kh * kw * c.wc * pairs * 4,
      [&](int64_t bgn, int64_t end) { k.conv(c, bgn, end); });
  return out;
}

// The bound of a product's instructions (lowbit.h, the register loops): `words` units of the AVX-512
// tile's (isa 3) or the AVX2 split tile's (isa 1) register-only work, shared evenly by torch's threads.
int64_t xnor_register_bound(int64_t words, int64_t isa) {
  TORCH_CHECK(isa == 1 || isa == 3, "a register bound exists for the AVX2 (1) and AVX-512 VPOPCNTDQ (3) builds");
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  TORCH_CHECK(isa == 1 ? bool(__builtin_cpu_supports("avx2"))
                       : __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq"),
              "this CPU lacks the instructions of build ", isa);
#endif
  TORCH_CHECK(words >= 0, "words must be >= 0");
  auto loop = isa == 1 ? lowbit::avx2_register_loop : lowbit::avx512_register_loop;
  std::atomic<int64_t> sum{0};
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), words));
  at::parallel_for(0, threads, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t r = loop(words * (t + 1) / threads - words * t / threads, static_cast<uint64_t>(t) + 1);
      TORCH_CHECK(r >= 0, "no build ", isa, " on this architecture");
      sum += r;
    }
  });
  return sum.load();
}

// How many threads a parallel_for over `tasks` tasks runs on (a test checks torch's count is used).
int64_t threads_used(int64_t tasks) {
  std::atomic<uint64_t> seen{0};
  at::parallel_for(0, tasks, 1, [&](int64_t, int64_t) { seen |= uint64_t(1) << (at::get_thread_num() % 64); });
  return __builtin_popcountll(seen.load());
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("cpu_features", &cpu_features);
  m.def("compiled", [](int64_t isa) {
    const lowbit::Kernels* k = builds(isa);
    return k != nullptr && k->compiled;
  });
  m.def("pack_signs", &pack_signs);
  m.def("pack_codes", &pack_codes);
  m.def("sign_pack", &sign_pack);
  m.def("pack_nchw", &pack_nchw);
  m.def("to_panels", &to_panels);
  m.def("plane_sums", &plane_sums);
  m.def("gemm", &gemm);
  m.def("xnor_gemm", &xnor_gemm);
  m.def("gemm_bits", &gemm_bits);
  m.def("conv", &conv);
  m.def("threads_used", &threads_used);
  m.def("xnor_register_bound", &xnor_register_bound);
}
