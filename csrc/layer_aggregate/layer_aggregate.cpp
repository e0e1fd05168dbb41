// layer_aggregate on CPU and CUDA: per layer one library GEMM (fp32 accumulation) and one fused
// row pass that adds the bias, applies the activation and the LayerNorm and folds the result,
// weighted by softmax(layer_logits), into a single fp32 accumulator. No stack of hidden states
// and no per-layer outputs are materialised.
// Saved for backward: each layer's GEMM output z (N, m) in the GEMM dtype and the LN statistics
// (L, N, 2). Large results are kept one tensor per layer: one block of L layers would always come
// fresh from mmap (page faults and zeroing on every step); per-layer ones are reused.
#include <torch/library.h>

#include "../common/op_utils.h"

namespace elp_fast {
namespace {

constexpr const char* OP = "layer_aggregate";

void check_inputs(at::TensorList hidden, const at::Tensor& proj_w, const at::Tensor& layer_logits) {
  TORCH_CHECK(!hidden.empty(), OP, ": hidden_states is empty");
  const at::Tensor& h0 = hidden[0];
  TORCH_CHECK(h0.dim() == 2, OP, ": hidden_states[0] must be (N, d), got ", h0.sizes());
  dt_of(h0.scalar_type());
  for (size_t l = 0; l < hidden.size(); ++l) {
    TORCH_CHECK(hidden[l].sizes() == h0.sizes() && hidden[l].scalar_type() == h0.scalar_type() &&
                    hidden[l].device() == h0.device(),
                OP, ": hidden_states[", l, "] differs from hidden_states[0] in shape, dtype or device");
  }
  const int64_t L = static_cast<int64_t>(hidden.size());
  TORCH_CHECK(proj_w.dim() == 3 && proj_w.size(0) == L && proj_w.size(2) == h0.size(1), OP,
              ": proj_w must be (L=", L, ", m, d=", h0.size(1), "), got ", proj_w.sizes());
  TORCH_CHECK(layer_logits.numel() == L, OP, ": layer_logits must have L=", L, " entries");
  check_same_device(OP, h0, proj_w, "proj_w");
  check_same_device(OP, h0, layer_logits, "layer_logits");
}

// Returns (H, z, stats); z is one tensor per layer, and z and stats are empty unless `save`.
std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor> forward(
    at::TensorList hidden, const at::Tensor& proj_w, const at::Tensor& proj_b, const at::Tensor& ln_w,
    const at::Tensor& ln_b, const at::Tensor& layer_logits, c10::string_view activation, double eps, bool save) {
  check_inputs(hidden, proj_w, layer_logits);
  c10::DeviceGuard guard(hidden[0].device());
  const auto& rows = rows_for(hidden[0]);
  const int64_t L = proj_w.size(0), m = proj_w.size(1), n = hidden[0].size(0);
  const at::ScalarType T = hidden[0].scalar_type(), G = gemm_type(hidden[0]);
  const auto fopt = hidden[0].options().dtype(at::kFloat);
  const at::Tensor weights = at::softmax(layer_logits.to(at::kFloat), 0).contiguous();
  const at::Tensor w = proj_w.to(G), b = f32(proj_b), lw = f32(ln_w), lb = f32(ln_b);

  at::Tensor acc = at::empty({n, m}, fopt);
  at::Tensor out = T == at::kFloat ? acc : at::empty({n, m}, hidden[0].options());
  std::vector<at::Tensor> z;
  at::Tensor stats = at::empty({save ? L : 1, n, 2}, fopt);
  for (int64_t l = 0; l < L; ++l) {
    const at::Tensor zl = at::mm(hidden[l].to(G), w[l].t()), sl = stats[save ? l : 0];
    if (save) z.push_back(zl);
    rows.layer_fwd({zl.data_ptr(), fptr(b) + l * m, fptr(lw) + l * m, fptr(lb) + l * m, weights.data_ptr<float>(), l,
                    acc.data_ptr<float>(), (l == L - 1 && T != at::kFloat) ? out.data_ptr() : nullptr,
                    sl.data_ptr<float>(), l == 0, n, m, static_cast<float>(eps), dt_of(T), dt_of(G),
                    act_of(activation)});
  }
  if (!save) return {out, {}, at::empty({0}, fopt)};
  return {out, z, stats};
}

// Returns [dh_0 .. dh_{L-1}, d_proj_w, d_proj_b, d_ln_w, d_ln_b, d_layer_logits], empty where not
// requested. One tensor per layer, not one (L, N, d) block: a block that large always comes
// fresh from mmap (page faults and zeroing on every step), per-layer ones are reused.
std::vector<at::Tensor> backward(
    const at::Tensor& dH_, at::TensorList hidden, at::TensorList z_, const at::Tensor& stats_,
    const at::Tensor& proj_w, const at::Tensor& proj_b, const at::Tensor& ln_w, const at::Tensor& ln_b,
    const at::Tensor& layer_logits, c10::string_view activation, double eps, bool need_dh, bool need_params,
    bool need_logits) {
  check_inputs(hidden, proj_w, layer_logits);
  c10::DeviceGuard guard(hidden[0].device());
  const auto& rows = rows_for(hidden[0]);
  const int64_t L = proj_w.size(0), m = proj_w.size(1), n = hidden[0].size(0), d = hidden[0].size(1);
  TORCH_CHECK(dH_.dim() == 2 && dH_.size(0) == n && dH_.size(1) == m, OP, ": dH must be (N, m), got ", dH_.sizes());
  std::vector<at::Tensor> z = z_.vec();
  at::Tensor stats = stats_;
  if (static_cast<int64_t>(z.size()) != L) {  // the forward ran without saving: recompute
    std::tie(std::ignore, z, stats) = forward(hidden, proj_w, proj_b, ln_w, ln_b, layer_logits, activation, eps, true);
  }
  const at::ScalarType T = hidden[0].scalar_type(), G = gemm_type(hidden[0]);
  const at::Tensor dH = rows_ready(dH_.to(T));
  const auto fopt = hidden[0].options().dtype(at::kFloat);
  const at::Tensor weights = at::softmax(layer_logits.to(at::kFloat), 0).contiguous();
  const at::Tensor w = proj_w.to(G), b = f32(proj_b), lw = f32(ln_w), lb = f32(ln_b);
  const int64_t cr = chunk_rows(hidden[0]), nc = chunks(n, cr);

  at::Tensor dz = at::empty({n, m}, hidden[0].options().dtype(G));
  at::Tensor part = at::empty({L, nc, 3, m}, fopt), gpart = at::empty({L, nc}, fopt);
  std::vector<at::Tensor> out;
  at::Tensor dw = need_params ? at::empty({L, m, d}, proj_w.options().dtype(G)) : at::Tensor();
  for (int64_t l = 0; l < L; ++l) {
    rows.layer_bwd({dH.data_ptr(), z[l].data_ptr(), stats[l].data_ptr<float>(), fptr(b) + l * m, fptr(lw) + l * m,
                    fptr(lb) + l * m, weights.data_ptr<float>(), l, dz.data_ptr(), part[l].data_ptr<float>(),
                    gpart[l].data_ptr<float>(), n, m, cr, dt_of(T), dt_of(G), act_of(activation)});
    if (need_params) {
      at::Tensor dwl = dw[l];
      at::mm_out(dwl, dz.t(), hidden[l].to(G));
    }
    out.push_back(need_dh ? at::mm(dz, w[l]).to(T) : at::empty({0}, hidden[0].options()));
  }
  if (need_params) {
    const at::Tensor sums = part.sum(1);  // (L, 3, m): d_proj_b, d_ln_w, d_ln_b
    out.push_back(owned(dw, proj_w));
    out.push_back(owned(sums.select(1, 0), proj_b));
    out.push_back(owned(sums.select(1, 1), ln_w));
    out.push_back(owned(sums.select(1, 2), ln_b));
  } else {
    for (int i = 0; i < 4; ++i) out.push_back(at::empty({0}, hidden[0].options()));
  }
  if (need_logits) {
    // softmax backward: d logit_k = w_k (g_k - sum_l w_l g_l), g_l = sum(dH * LN_l(...))
    const at::Tensor g = gpart.sum(1);
    out.push_back(owned(weights * (g - (weights * g).sum()), layer_logits));
  } else {
    out.push_back(at::empty({0}, layer_logits.options()));
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(elp_fast_C, CPU, m) {
  m.impl("layer_aggregate_fwd", &forward);
  m.impl("layer_aggregate_bwd", &backward);
}
#ifdef ELP_FAST_WITH_CUDA
TORCH_LIBRARY_IMPL(elp_fast_C, CUDA, m) {
  m.impl("layer_aggregate_fwd", &forward);
  m.impl("layer_aggregate_bwd", &backward);
}
#endif

}  // namespace elp_fast
