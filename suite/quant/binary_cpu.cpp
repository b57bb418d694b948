// Fused CPU kernels for the binary quantizers (suite/quant/fused.py explains when they are used).
// Each replaces two or three elementwise torch passes over a weight-sized tensor by one.
// sign(0) = sign(-0.0) = +1 (the papers' convention), as copysign(1, x + 0): x + 0 turns -0.0 into +0.0.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/utils/pybind.h>

#include <atomic>
#include <cmath>
#include <tuple>

namespace {

constexpr int64_t kGrain = 1 << 15;  // elements per task: small tensors stay on one thread
constexpr int kLanes = 16;           // independent partial sums (see row_abs_sum)

int64_t rows_per_task(int64_t n) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1)); }

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), name, " must be a contiguous CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name, " must be float32 or float64");
}

// out = sign(x) * scale, one pass.
at::Tensor sign_scaled(const at::Tensor& x, double scale, at::Tensor out) {
  check(x, "x");
  check(out, "out");
  TORCH_CHECK(out.sizes() == x.sizes() && out.scalar_type() == x.scalar_type(), "out must be shaped like x");
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sign_scaled", [&] {
    const scalar_t* px = x.const_data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const scalar_t s = static_cast<scalar_t>(scale);
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) po[j] = std::copysign(s, px[j] + scalar_t(0));
    });
  });
  return out;
}

// sum_j |w_ij| per output channel i (w viewed as (rows, n)), reading w once and writing nothing
// weight-sized. kLanes partial sums let the compiler vectorize the loop (a float sum in order cannot).
template <typename scalar_t>
scalar_t row_abs_sum(const scalar_t* __restrict r, int64_t n) {
  scalar_t acc[kLanes] = {0};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += std::abs(r[j + k]);
  scalar_t total = 0;
  for (; j < n; ++j) total += std::abs(r[j]);
  for (int k = 0; k < kLanes; ++k) total += acc[k];
  return total;
}

template <typename scalar_t>
scalar_t sgn(scalar_t v) { return std::copysign(scalar_t(1), v + scalar_t(0)); }

at::Tensor row_l1(const at::Tensor& w) {
  check(w, "w");
  TORCH_CHECK(w.dim() >= 1 && w.size(0) > 0, "w must have output channels");
  auto l1 = at::empty({w.size(0)}, w.options());
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "row_l1", [&] {
    const scalar_t* pw = w.const_data_ptr<scalar_t>();
    scalar_t* pl = l1.data_ptr<scalar_t>();
    const int64_t n = w.numel() / w.size(0);
    at::parallel_for(0, w.size(0), rows_per_task(n), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) pl[i] = row_abs_sum(pw + i * n, n);
    });
  });
  return l1;
}

// XNOR-Net's BWN weights: (alpha_i sign(w_ij), alpha_i = mean_j |w_ij|) per output channel i. Each
// row is read twice, the second time from the L1 cache: one pass over memory.
std::tuple<at::Tensor, at::Tensor> scaled_sign_rows(const at::Tensor& w) {
  check(w, "w");
  TORCH_CHECK(w.dim() >= 1 && w.size(0) > 0, "w must have output channels");
  auto out = at::empty_like(w);
  auto alpha = at::empty({w.size(0)}, w.options());
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "scaled_sign_rows", [&] {
    const scalar_t* pw = w.const_data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    scalar_t* pa = alpha.data_ptr<scalar_t>();
    const int64_t n = w.numel() / w.size(0);
    at::parallel_for(0, w.size(0), rows_per_task(n), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const scalar_t* __restrict r = pw + i * n;
        scalar_t* __restrict s = po + i * n;
        const scalar_t a = row_abs_sum(r, n) / static_cast<scalar_t>(n);
        pa[i] = a;
        for (int64_t j = 0; j < n; ++j) s[j] = std::copysign(a, r[j] + scalar_t(0));
      }
    });
  });
  return {out, alpha};
}

// BWN's weight gradient from g = dC/dW~, per output channel i (out may be g itself):
//   c_i = mean_j sign(w_ij) g_ij,   out_ij = alpha_i 1{|w_ij| <= 1} g_ij + sign(w_ij) c_i
// Each row is read twice (the dot product, then the update), the second time from L1.
at::Tensor bwn_weight_grad(const at::Tensor& g, const at::Tensor& w, const at::Tensor& alpha, at::Tensor out) {
  check(g, "g");
  check(w, "w");
  check(alpha, "alpha");
  check(out, "out");
  TORCH_CHECK(g.sizes() == w.sizes() && g.scalar_type() == w.scalar_type(), "g must be shaped like w");
  TORCH_CHECK(out.sizes() == w.sizes() && out.scalar_type() == w.scalar_type(), "out must be shaped like w");
  TORCH_CHECK(alpha.numel() == w.size(0) && alpha.scalar_type() == w.scalar_type(),
              "alpha must hold one value per row of w");
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "bwn_weight_grad", [&] {
    const scalar_t* pg = g.const_data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const scalar_t* pw = w.const_data_ptr<scalar_t>();
    const scalar_t* pa = alpha.const_data_ptr<scalar_t>();
    const int64_t n = w.numel() / w.size(0);
    at::parallel_for(0, w.size(0), rows_per_task(n), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const scalar_t* r = pg + i * n;  // may alias o: each element is read before it is written
        scalar_t* o = po + i * n;
        const scalar_t* __restrict q = pw + i * n;
        scalar_t acc[kLanes] = {0};
        int64_t j = 0;
        for (; j + kLanes <= n; j += kLanes)
          for (int k = 0; k < kLanes; ++k) acc[k] += sgn(q[j + k]) * r[j + k];
        scalar_t dot = 0;
        for (; j < n; ++j) dot += sgn(q[j]) * r[j];
        for (int k = 0; k < kLanes; ++k) dot += acc[k];
        const scalar_t c = dot / static_cast<scalar_t>(n), a = pa[i];
        for (j = 0; j < n; ++j) {
          const scalar_t v = q[j], gj = r[j];  // both loaded unconditionally: the loop vectorizes
          o[j] = (std::abs(v) > 1 ? scalar_t(0) : a) * gj + c * sgn(v);
        }
      }
    });
  });
  return out;
}

// How many threads a parallel_for over `tasks` tasks runs on: torch's count where the extension was
// built with OpenMP, 1 where at::parallel_for compiled to a serial loop (a test checks it).
int64_t threads_used(int64_t tasks) {
  std::atomic<uint64_t> seen{0};
  at::parallel_for(0, tasks, 1, [&](int64_t, int64_t) { seen |= uint64_t(1) << (at::get_thread_num() % 64); });
  return __builtin_popcountll(seen.load());
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("sign_scaled", &sign_scaled);
  m.def("row_l1", &row_l1);
  m.def("scaled_sign_rows", &scaled_sign_rows);
  m.def("bwn_weight_grad", &bwn_weight_grad);
  m.def("threads_used", &threads_used);
}
