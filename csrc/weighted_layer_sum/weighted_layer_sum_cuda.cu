// CUDA kernels of weighted_layer_sum: the L hidden states are read in place through a device
// pointer array with 16-byte loads; forward reads each element of each layer once, backward
// writes every layer's gradient and sums dH * h_l per block (no atomics).
#include "../common/cuda_utils.cuh"

namespace elp_fast::cuda {
namespace {

template <typename T, int E>
__global__ void wsum_fwd_kernel(const void* const* __restrict__ h, const float* __restrict__ w, int64_t layers,
                                T* __restrict__ out, int64_t n) {
  const int64_t groups = n / E;
  for (int64_t gi = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; gi < groups;
       gi += int64_t(gridDim.x) * blockDim.x) {
    float acc[E], t[E];
    load<T, E>(static_cast<const T*>(h[0]) + gi * E, acc);
    const float w0 = w[0];
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] *= w0;
    for (int64_t l = 1; l < layers; ++l) {
      load<T, E>(static_cast<const T*>(h[l]) + gi * E, t);
      const float wl = w[l];
#pragma unroll
      for (int e = 0; e < E; ++e) acc[e] += wl * t[e];
    }
    store<T, E>(out + gi * E, acc);
  }
}

// One block per chunk of elements; layer by layer (the chunk's dH stays in L1/L2).
template <typename T, int E>
__global__ void wsum_bwd_kernel(const T* __restrict__ dH, const void* const* __restrict__ h,
                                const float* __restrict__ w, int64_t layers, void* const* __restrict__ dh,
                                float* __restrict__ gpart, int64_t n, int64_t chunk) {
  __shared__ float red[32];
  const int64_t e0 = blockIdx.x * chunk, e1 = min(n, e0 + chunk);
  for (int64_t l = 0; l < layers; ++l) {
    const float wl = w[l];
    float g = 0.f;
    for (int64_t k = e0 + int64_t(threadIdx.x) * E; k < e1; k += int64_t(blockDim.x) * E) {
      float d[E], t[E];
      load<T, E>(dH + k, d);
      if (dh) {
#pragma unroll
        for (int e = 0; e < E; ++e) t[e] = wl * d[e];
        store<T, E>(static_cast<T*>(dh[l]) + k, t);
      }
      if (gpart) {
        load<T, E>(static_cast<const T*>(h[l]) + k, t);
#pragma unroll
        for (int e = 0; e < E; ++e) g += d[e] * t[e];
      }
    }
    if (gpart) {
      const float total = block_sum(g, red);
      if (threadIdx.x == 0) gpart[blockIdx.x * layers + l] = total;
    }
  }
}

}  // namespace

// The pointer table `a.h` is in device memory (weighted_layer_sum.cpp copies it there); the
// alignment of each layer was checked on the host (`layers_aligned`).
void wsum_fwd(const WsumFwdArgs& a) {
  if (a.n == 0) return;
  by_type(a.t, [&]<typename T>() {
    constexpr int V = 16 / sizeof(T);
    const bool vec = a.layers_aligned && a.n % V == 0 && aligned16(a.out);
    const int64_t groups = vec ? a.n / V : a.n;
    const int blocks = static_cast<int>(std::min<int64_t>((groups + 255) / 256, 65535LL * 16));
    if (vec)
      wsum_fwd_kernel<T, V><<<blocks, 256, 0, stream()>>>(a.h, a.weights, a.layers, static_cast<T*>(a.out), a.n);
    else
      wsum_fwd_kernel<T, 1><<<blocks, 256, 0, stream()>>>(a.h, a.weights, a.layers, static_cast<T*>(a.out), a.n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void wsum_bwd(const WsumBwdArgs& a) {
  if (a.n == 0) return;
  by_type(a.t, [&]<typename T>() {
    constexpr int V = 16 / sizeof(T);
    // the gradients are fresh allocations (aligned); the hidden states were checked on the host
    const bool vec = a.layers_aligned && a.n % V == 0 && a.chunk % V == 0 && aligned16(a.dH);
    const int blocks = static_cast<int>((a.n + a.chunk - 1) / a.chunk);
    const T* dH = static_cast<const T*>(a.dH);
    void* const* dh = a.dh;
    if (vec)
      wsum_bwd_kernel<T, V><<<blocks, 256, 0, stream()>>>(dH, a.h, a.weights, a.layers, dh, a.gpart, a.n, a.chunk);
    else
      wsum_bwd_kernel<T, 1><<<blocks, 256, 0, stream()>>>(dH, a.h, a.weights, a.layers, dh, a.gpart, a.n, a.chunk);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace elp_fast::cuda
