// The row-wise epilogues shared by the CPU and CUDA implementations, as plain argument structs.
// Host code (the op files) does the GEMMs and calls these; each CPU instruction set and CUDA
// implements them. No ATen here: this header is included under different compiler targets.
#pragma once
#include <cstdint>

namespace elp_fast {

// Element types: T (activations in and out) and G (the GEMM operand type: T, except fp16 on
// CPU, whose GEMMs run in fp32 because CPUs without AVX512-FP16 have no fast fp16 GEMM).
enum class Dt : int { F32 = 0, BF16 = 1, F16 = 2 };
enum class Act : int { GELU = 0, RELU = 1 };

// a = act(z + b): (n, k) rows of a GEMM output, bias and activation fused.
struct BiasActArgs {
  const void* z; const float* b; void* a;
  int64_t n, k; Dt g; Act act;
};

// dz = da * act'(z + b); db_part[chunk, k] sums dz over the chunk's rows.
struct BiasActGradArgs {
  const void* da; const void* z; const float* b; void* dz; float* db_part;
  int64_t n, k, chunk_rows; Dt g; Act act;
};

// The E-adapter's output epilogue: with vb = v + up_b (v = the up-projection, G),
//   s = x + LN(vb; ln_w, ln_b) (+ res);  y = LN(s; post_w, post_b) when post_w is given.
// stats (n, 2|4) fp32: mean and 1/std of vb, then of s.
struct AdapterOutArgs {
  const void* v; const float* up_b; const float* ln_w; const float* ln_b;
  const void* x; const void* res; const float* post_w; const float* post_b;
  void* y; float* stats;
  int64_t n, d; float eps; Dt t, g;
};

// Its backward: writes dy1 (the gradient reaching x + u + res) to dx1 (G, may be null) and dres
// (T, may be null), dv (G), and per-chunk sums part[chunk, 5, d] of
// d_up_b, d_ln_w, d_ln_b, d_post_w, d_post_b.
struct AdapterOutGradArgs {
  const void* dy; const void* v; const float* stats;
  const float* up_b; const float* ln_w; const float* ln_b;
  const void* x; const void* res; const float* post_w; const float* post_b;
  void* dx1; void* dres; void* dv; float* part;
  int64_t n, d, chunk_rows; Dt t, g;
};

// One L-adapter folded into the weighted sum: with zb = z[l] + b,
//   acc (+)= weights[layer] * LN(act(zb); ln_w, ln_b);  stats (n, 2) = mean, 1/std.
// `first` assigns instead of adding; `out` (T, may be null) also receives acc (last layer).
struct LayerFwdArgs {
  const void* z; const float* b; const float* ln_w; const float* ln_b;
  const float* weights; int64_t layer;
  float* acc; void* out; float* stats; bool first;
  int64_t n, m; float eps; Dt t, g; Act act;
};

// Its backward for one layer: dz (G) and per-chunk sums part[chunk, 3, m] of d_b, d_ln_w, d_ln_b
// and gpart[chunk] = sum(dH * LN(...)) (the layer's logit gradient before the softmax).
struct LayerBwdArgs {
  const void* dH; const void* z; const float* stats;
  const float* b; const float* ln_w; const float* ln_b;
  const float* weights; int64_t layer;
  void* dz; float* part; float* gpart;
  int64_t n, m, chunk_rows; Dt t, g; Act act;
};

// out = sum_l weights[l] * h[l] over `n` elements, h read in place through a pointer array.
// `layers_aligned`: every layer's data is 16-byte aligned (lets CUDA use vector loads).
struct WsumFwdArgs {
  const void* const* h; const float* weights; int64_t layers;
  void* out; int64_t n; Dt t; bool layers_aligned;
};

// dh[l] = weights[l] * dH (dh: a pointer table like h, or null: not needed); gpart[chunk, l] =
// sum(dH * h[l]) over the chunk's elements (may be null).
struct WsumBwdArgs {
  const void* dH; const void* const* h; const float* weights; int64_t layers;
  void* const* dh; float* gpart; int64_t n, chunk; Dt t; bool layers_aligned;
};

struct RowKernels {
  const char* name;
  void (*bias_act)(const BiasActArgs&);
  void (*bias_act_grad)(const BiasActGradArgs&);
  void (*adapter_out)(const AdapterOutArgs&);
  void (*adapter_out_grad)(const AdapterOutGradArgs&);
  void (*layer_fwd)(const LayerFwdArgs&);
  void (*layer_bwd)(const LayerBwdArgs&);
  void (*wsum_fwd)(const WsumFwdArgs&);
  void (*wsum_bwd)(const WsumBwdArgs&);
};

// CPU: the best instruction set this CPU has (or ELP_FAST_CPU_ISA=default|avx2|avx512).
const RowKernels& cpu_row_kernels();
#ifdef ELP_FAST_WITH_CUDA
const RowKernels& cuda_row_kernels();
#endif

}  // namespace elp_fast
