// bottleneck_adapter on CPU and CUDA: library GEMMs (MKL / oneDNN on CPU, cuBLAS on CUDA) with
// fp32 accumulation, and the fused row epilogues of rows.h between them.
//
//   forward:  z = x W_down^T;  a = act(z + b_down);  v = a W_up^T;
//             y = [post-LN](x + LN(v + b_up) + residual)            (one pass over the rows)
//   backward: one pass over the rows for both LayerNorms and every d-sized parameter gradient,
//             then da = dv W_up, dz = da act'(.), dW_up = dv^T a, dW_down = dz^T x, dx += dz W_down.
// Saved for backward: z (N, r) and v (N, d) in the GEMM dtype and the LN statistics (fp32); the
// CPU is compute-bound, so keeping v costs less than recomputing its GEMM.
#include <torch/library.h>

#include "../common/op_utils.h"

namespace elp_fast {
namespace {

constexpr const char* OP = "bottleneck_adapter";
using OptT = c10::optional<at::Tensor>;

void check_inputs(const at::Tensor& x, const at::Tensor& down_w, const at::Tensor& up_w, const OptT& residual,
                  const OptT& post_ln_w) {
  TORCH_CHECK(x.dim() == 2, OP, ": x must be (N, d), got ", x.sizes());
  TORCH_CHECK(down_w.dim() == 2 && down_w.size(1) == x.size(1), OP, ": down_w must be (r, d=", x.size(1),
              "), got ", down_w.sizes());
  TORCH_CHECK(up_w.dim() == 2 && up_w.size(0) == x.size(1) && up_w.size(1) == down_w.size(0), OP,
              ": up_w must be (d, r), got ", up_w.sizes());
  if (residual) TORCH_CHECK(residual->sizes() == x.sizes(), OP, ": residual must match x, got ", residual->sizes());
  dt_of(x.scalar_type());
  check_same_device(OP, x, down_w, "down_w");
  check_same_device(OP, x, up_w, "up_w");
  if (residual) check_same_device(OP, x, *residual, "residual");
  if (post_ln_w) check_same_device(OP, x, *post_ln_w, "post_ln_w");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward(
    const at::Tensor& x_, const at::Tensor& down_w, const at::Tensor& down_b, const at::Tensor& up_w,
    const at::Tensor& up_b, const at::Tensor& ln_w, const at::Tensor& ln_b, const OptT& residual,
    const OptT& post_ln_w, const OptT& post_ln_b, c10::string_view activation, double eps) {
  check_inputs(x_, down_w, up_w, residual, post_ln_w);
  c10::DeviceGuard guard(x_.device());
  const auto& rows = rows_for(x_);
  const at::Tensor x = rows_ready(x_);
  const at::ScalarType G = gemm_type(x);
  const int64_t n = x.size(0), d = x.size(1), r = down_w.size(0);
  const bool post = post_ln_w.has_value();
  const at::Tensor res = residual ? rows_ready(*residual) : at::Tensor();
  const at::Tensor xg = x.to(G), bd = f32(down_b), bu = f32(up_b), lw = f32(ln_w), lb = f32(ln_b);
  const at::Tensor pw = post ? f32(*post_ln_w) : at::Tensor(), pb = post ? f32(*post_ln_b) : at::Tensor();

  at::Tensor z = at::mm(xg, down_w.to(G).t());
  at::Tensor a = at::empty_like(z);
  rows.bias_act({z.data_ptr(), bd.data_ptr<float>(), a.data_ptr(), n, r, dt_of(G), act_of(activation)});
  at::Tensor v = at::mm(a, up_w.to(G).t());
  at::Tensor y = at::empty_like(x);
  at::Tensor stats = at::empty({n, post ? 4 : 2}, x.options().dtype(at::kFloat));
  rows.adapter_out({v.data_ptr(), fptr(bu), fptr(lw), fptr(lb), x.data_ptr(),
                    res.defined() ? res.data_ptr() : nullptr, fptr(pw), fptr(pb), y.data_ptr(),
                    stats.data_ptr<float>(), n, d, static_cast<float>(eps), dt_of(x.scalar_type()), dt_of(G)});
  return {y, z, v, stats};
}

// Returns [dx, dres, d_down_w, d_down_b, d_up_w, d_up_b, d_ln_w, d_ln_b, d_post_ln_w, d_post_ln_b],
// empty where not requested (or, for the post-LN ones, where there is no post-LN).
std::vector<at::Tensor> backward(
    const at::Tensor& dy_, const at::Tensor& x_, const at::Tensor& z, const at::Tensor& v,
    const at::Tensor& stats, const at::Tensor& down_w, const at::Tensor& down_b, const at::Tensor& up_w,
    const at::Tensor& up_b, const at::Tensor& ln_w, const at::Tensor& ln_b, const OptT& residual,
    const OptT& post_ln_w, const OptT& post_ln_b, c10::string_view activation, bool need_dx,
    bool need_dres, bool need_params) {
  check_inputs(x_, down_w, up_w, residual, post_ln_w);
  const int64_t n = x_.size(0), d = x_.size(1), r = down_w.size(0);
  TORCH_CHECK(dy_.sizes() == x_.sizes(), OP, ": dy must match x, got ", dy_.sizes());
  TORCH_CHECK(z.numel() == n * r && v.numel() == n * d, OP, ": z / v are not this forward's saved tensors");
  c10::DeviceGuard guard(x_.device());
  const auto& rows = rows_for(x_);
  const at::Tensor x = rows_ready(x_), dy = rows_ready(dy_.to(x_.scalar_type()));
  const at::ScalarType G = gemm_type(x);
  const bool post = post_ln_w.has_value();
  const at::Tensor res = residual ? rows_ready(*residual) : at::Tensor();
  const at::Tensor bd = f32(down_b), bu = f32(up_b), lw = f32(ln_w), lb = f32(ln_b);
  const at::Tensor pw = post ? f32(*post_ln_w) : at::Tensor(), pb = post ? f32(*post_ln_b) : at::Tensor();
  const auto fopt = x.options().dtype(at::kFloat), gopt = x.options().dtype(G);
  const int64_t cr = chunk_rows(x), nc = chunks(n, cr);
  const Act act = act_of(activation);

  at::Tensor dx1 = need_dx ? at::empty({n, d}, gopt) : at::Tensor();
  at::Tensor dres = need_dres ? at::empty_like(x) : at::Tensor();
  at::Tensor dv = at::empty({n, d}, gopt);
  at::Tensor part = at::empty({nc, 5, d}, fopt);
  rows.adapter_out_grad({dy.data_ptr(), v.data_ptr(), stats.data_ptr<float>(), fptr(bu), fptr(lw), fptr(lb),
                         x.data_ptr(), res.defined() ? res.data_ptr() : nullptr, fptr(pw), fptr(pb),
                         need_dx ? dx1.data_ptr() : nullptr, need_dres ? dres.data_ptr() : nullptr,
                         dv.data_ptr(), part.data_ptr<float>(), n, d, cr, dt_of(x.scalar_type()), dt_of(G)});

  std::vector<at::Tensor> out;
  for (int i = 0; i < 10; ++i) out.push_back(at::empty({0}, x.options()));
  if (need_dres) out[1] = dres;
  if (!need_dx && !need_params) return out;
  const at::Tensor wd = down_w.to(G), wu = up_w.to(G);
  at::Tensor a = at::empty({n, r}, gopt);
  rows.bias_act({z.data_ptr(), bd.data_ptr<float>(), a.data_ptr(), n, r, dt_of(G), act});
  at::Tensor da = at::mm(dv, wu);
  at::Tensor dz = at::empty_like(da);
  at::Tensor dbd = at::empty({nc, r}, fopt);
  rows.bias_act_grad({da.data_ptr(), z.data_ptr(), bd.data_ptr<float>(), dz.data_ptr(), dbd.data_ptr<float>(),
                      n, r, cr, dt_of(G), act});
  if (need_dx) out[0] = dx1.addmm_(dz, wd).to(x.scalar_type());
  if (need_params) {
    const at::Tensor sums = part.sum(0);  // (5, d): d_up_b, d_ln_w, d_ln_b, d_post_w, d_post_b
    out[2] = owned(at::mm(dz.t(), x.to(G)), down_w);
    out[3] = owned(dbd.sum(0), down_b);
    out[4] = owned(at::mm(dv.t(), a), up_w);
    out[5] = owned(sums[0], up_b);
    out[6] = owned(sums[1], ln_w);
    out[7] = owned(sums[2], ln_b);
    if (post) {
      out[8] = owned(sums[3], *post_ln_w);
      out[9] = owned(sums[4], *post_ln_b);
    }
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(elp_fast_C, CPU, m) {
  m.impl("bottleneck_adapter_fwd", &forward);
  m.impl("bottleneck_adapter_bwd", &backward);
}
#ifdef ELP_FAST_WITH_CUDA
TORCH_LIBRARY_IMPL(elp_fast_C, CUDA, m) {
  m.impl("bottleneck_adapter_fwd", &forward);
  m.impl("bottleneck_adapter_bwd", &backward);
}
#endif

}  // namespace elp_fast
