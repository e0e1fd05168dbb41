// Helpers shared by the op files (host side): dtype codes, the GEMM dtype, argument checks and
// the row kernels for a tensor's device.
#pragma once
#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>

#include <string_view>

#include "rows.h"

namespace elp_fast {

inline Dt dt_of(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return Dt::F32;
    case at::kBFloat16: return Dt::BF16;
    case at::kHalf: return Dt::F16;
    default: TORCH_CHECK(false, "elp_fast native ops take float32, bfloat16 or float16, got ", s);
  }
}

// GEMM operand dtype: the activations' own, except fp16 on CPU (no fast fp16 GEMM there).
inline at::ScalarType gemm_type(const at::Tensor& t) {
  return (t.is_cpu() && t.scalar_type() == at::kHalf) ? at::kFloat : t.scalar_type();
}

inline Act act_of(std::string_view name) {
  if (name == "gelu") return Act::GELU;
  if (name == "relu") return Act::RELU;
  TORCH_CHECK(false, "activation: got '", std::string(name), "'; expected 'gelu' or 'relu'");
}

inline const RowKernels& rows_for(const at::Tensor& t) {
  if (t.is_cuda()) {
#ifdef ELP_FAST_WITH_CUDA
    return cuda_row_kernels();
#else
    TORCH_CHECK(false, "elp_fast._C was built without CUDA; rebuild on a machine with nvcc");
#endif
  }
  TORCH_CHECK(t.is_cpu(), "elp_fast native ops take CPU or CUDA tensors, got ", t.device());
  return cpu_row_kernels();
}

// Rows per partial-sum chunk: fixed per device, so reductions do not depend on thread counts.
// On CUDA a chunk is one block of the backward row kernels: 16 rows make 400 blocks at the
// realistic 6,392 tokens, 3 per SM of a 132-SM card (32 rows made 200, 1.5 per SM).
inline int64_t chunk_rows(const at::Tensor& t) { return t.is_cuda() ? 16 : 64; }
inline int64_t chunks(int64_t n, int64_t rows) { return (n + rows - 1) / rows; }

// Contiguous, and on CUDA 16-byte aligned (a view can start anywhere): the CUDA row kernels use
// 16-byte accesses only when every row pointer allows it.
inline at::Tensor rows_ready(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  if (c.is_cuda() && reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 != 0) c = c.clone();
  return c;
}

// Small parameter vectors are read as fp32 by the row kernels.
inline at::Tensor f32(const at::Tensor& t) { return t.to(at::kFloat).contiguous(); }
inline const float* fptr(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }
inline const void* ptr(const c10::optional<at::Tensor>& t) { return t && t->defined() ? t->data_ptr() : nullptr; }

// A result in `like`'s dtype that owns its memory (custom-op outputs may not alias each other).
inline at::Tensor owned(const at::Tensor& t, const at::Tensor& like) {
  return t.to(like.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
}

inline void check_same_device(const char* op, const at::Tensor& like, const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " is on ", t.device(), " but the input is on ",
              like.device());
}

}  // namespace elp_fast
