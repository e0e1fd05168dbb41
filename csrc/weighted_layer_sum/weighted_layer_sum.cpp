// weighted_layer_sum on CPU and CUDA: sum_l softmax(w)_l h_l with the hidden states read in place
// through a pointer array, one pass forward and one pass backward (no torch.stack).
#include <torch/library.h>

#include "../common/op_utils.h"

namespace elp_fast {
namespace {

constexpr const char* OP = "weighted_layer_sum";

// The tensors' data pointers, where the row kernels can read them (device memory on CUDA).
at::Tensor pointer_table(const std::vector<at::Tensor>& hs, const at::Device& device) {
  at::Tensor table = at::empty({static_cast<int64_t>(hs.size())}, at::TensorOptions().dtype(at::kLong));
  auto* p = table.data_ptr<int64_t>();
  for (size_t l = 0; l < hs.size(); ++l) p[l] = reinterpret_cast<int64_t>(hs[l].data_ptr());
  if (!device.is_cuda()) return table;
  return table.pin_memory().to(device, /*non_blocking=*/true);
}

bool layers_aligned(const std::vector<at::Tensor>& hs) {
  for (const auto& h : hs)
    if (reinterpret_cast<uintptr_t>(h.data_ptr()) % 16 != 0) return false;
  return true;
}

std::vector<at::Tensor> contiguous_layers(at::TensorList hidden, const at::Tensor& layer_logits) {
  TORCH_CHECK(!hidden.empty(), OP, ": hidden_states is empty");
  TORCH_CHECK(layer_logits.numel() == static_cast<int64_t>(hidden.size()), OP, ": layer_logits must have L=",
              hidden.size(), " entries");
  dt_of(hidden[0].scalar_type());
  std::vector<at::Tensor> hs;
  for (size_t l = 0; l < hidden.size(); ++l) {
    TORCH_CHECK(hidden[l].sizes() == hidden[0].sizes() && hidden[l].scalar_type() == hidden[0].scalar_type() &&
                    hidden[l].device() == hidden[0].device(),
                OP, ": hidden_states[", l, "] differs from hidden_states[0] in shape, dtype or device");
    hs.push_back(hidden[l].contiguous());
  }
  check_same_device(OP, hidden[0], layer_logits, "layer_logits");
  return hs;
}

at::Tensor forward(at::TensorList hidden, const at::Tensor& layer_logits) {
  const std::vector<at::Tensor> hs = contiguous_layers(hidden, layer_logits);
  c10::DeviceGuard guard(hs[0].device());
  const at::Tensor weights = at::softmax(layer_logits.to(at::kFloat), 0).contiguous();
  const at::Tensor table = pointer_table(hs, hs[0].device());
  at::Tensor out = at::empty_like(hs[0]);
  rows_for(hs[0]).wsum_fwd({reinterpret_cast<const void* const*>(table.data_ptr<int64_t>()),
                            weights.data_ptr<float>(), static_cast<int64_t>(hs.size()), out.data_ptr(),
                            hs[0].numel(), dt_of(hs[0].scalar_type()), layers_aligned(hs)});
  return out;
}

// Returns [dh_0 .. dh_{L-1}, d_layer_logits], empty where not requested (one tensor per layer:
// see layer_aggregate.cpp).
std::vector<at::Tensor> backward(const at::Tensor& dH_, at::TensorList hidden, const at::Tensor& layer_logits,
                                 bool need_dh, bool need_logits) {
  const std::vector<at::Tensor> hs = contiguous_layers(hidden, layer_logits);
  TORCH_CHECK(dH_.sizes() == hs[0].sizes(), OP, ": dH must match the hidden states, got ", dH_.sizes());
  c10::DeviceGuard guard(hs[0].device());
  const at::Tensor dH = rows_ready(dH_.to(hs[0].scalar_type()));
  const int64_t L = static_cast<int64_t>(hs.size()), n = hs[0].numel();
  const at::Tensor weights = at::softmax(layer_logits.to(at::kFloat), 0).contiguous();
  const at::Tensor table = pointer_table(hs, hs[0].device());
  // elements per partial-sum chunk: fixed, so the sums do not depend on thread counts
  const int64_t chunk = 16384, nc = chunks(n, chunk);
  std::vector<at::Tensor> out;
  for (int64_t l = 0; l < L; ++l)
    out.push_back(need_dh ? at::empty(hs[0].sizes(), hs[0].options()) : at::empty({0}, hs[0].options()));
  const at::Tensor dh_table = pointer_table(out, hs[0].device());
  at::Tensor gpart = need_logits ? at::empty({nc, L}, hs[0].options().dtype(at::kFloat)) : at::Tensor();
  rows_for(hs[0]).wsum_bwd({dH.data_ptr(), reinterpret_cast<const void* const*>(table.data_ptr<int64_t>()),
                            weights.data_ptr<float>(), L,
                            need_dh ? reinterpret_cast<void* const*>(dh_table.data_ptr<int64_t>()) : nullptr,
                            need_logits ? gpart.data_ptr<float>() : nullptr, n, chunk, dt_of(hs[0].scalar_type()),
                            layers_aligned(hs)});
  at::Tensor dlogits = at::empty({0}, layer_logits.options());
  if (need_logits) {
    const at::Tensor g = gpart.sum(0);
    dlogits = owned(weights * (g - (weights * g).sum()), layer_logits);
  }
  out.push_back(dlogits);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(elp_fast_C, CPU, m) {
  m.impl("weighted_layer_sum_fwd", &forward);
  m.impl("weighted_layer_sum_bwd", &backward);
}
#ifdef ELP_FAST_WITH_CUDA
TORCH_LIBRARY_IMPL(elp_fast_C, CUDA, m) {
  m.impl("weighted_layer_sum_fwd", &forward);
  m.impl("weighted_layer_sum_bwd", &backward);
}
#endif

}  // namespace elp_fast
