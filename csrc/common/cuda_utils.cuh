// Device helpers for the CUDA row kernels: fp32 math on T = float / c10::Half / c10::BFloat16,
// 16-byte vector loads, block reductions and the launch plan (threads x slots x vector width).
#pragma once
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "rows.h"

namespace elp_fast::cuda {

constexpr int kMaxThreads = 1024;

// E consecutive elements of T (E * sizeof(T) bytes, 16 when vectorised), converted to fp32.
template <typename T, int E>
struct alignas(sizeof(T) * E) Pack {
  T v[E];
};

template <typename T, int E>
__device__ __forceinline__ void load(const T* p, float (&out)[E]) {
  const Pack<T, E> pk = *reinterpret_cast<const Pack<T, E>*>(p);
#pragma unroll
  for (int e = 0; e < E; ++e) out[e] = static_cast<float>(pk.v[e]);
}

template <typename T, int E>
__device__ __forceinline__ void store(T* p, const float (&in)[E]) {
  Pack<T, E> pk;
#pragma unroll
  for (int e = 0; e < E; ++e) pk.v[e] = static_cast<T>(in[e]);
  *reinterpret_cast<Pack<T, E>*>(p) = pk;
}

// fp32 parameters: E floats, read as plain (cached) loads.
template <int E>
__device__ __forceinline__ void loadf(const float* p, float (&out)[E]) {
#pragma unroll
  for (int e = 0; e < E; ++e) out[e] = __ldg(p + e);
}

__device__ __forceinline__ float act_fwd(float z, Act act) {
  if (act == Act::RELU) return z > 0.f ? z : 0.f;
  return 0.5f * z * (1.f + erff(z * 0.70710678118654752f));
}

__device__ __forceinline__ float act_grad(float z, Act act) {
  if (act == Act::RELU) return z > 0.f ? 1.f : 0.f;
  const float cdf = 0.5f * (1.f + erff(z * 0.70710678118654752f));
  const float pdf = expf(-0.5f * z * z) * 0.39894228040143268f;
  return cdf + z * pdf;
}

// Sum over the block; every thread gets the total. `shared` holds 32 floats.
__device__ __forceinline__ float block_sum(float v, float* shared) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = (blockDim.x + 31) >> 5;
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : 0.f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

inline bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

inline cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// Launches a row kernel kernel_for.template operator()<E, S>() (a pointer to kernel<T, E, S>) on
// `blocks` blocks. A row of `width` elements is spread over one block: each thread owns S groups
// of E consecutive elements, E = 16 bytes of T when every pointer and the width allow it, else 1,
// so a row's values and a thread's parameter-gradient partials stay in registers. S is the
// smallest of 1, 2, 4 whose block fits the kernel's register budget (cudaFuncGetAttributes).
template <typename T, typename Args, typename KernelFor>
inline void launch_rows(int64_t width, bool aligned, int64_t blocks, const Args& args, KernelFor&& kernel_for) {
  constexpr int V = 16 / sizeof(T);
  auto with_vec = [&]<int E>() -> bool {
    const int64_t units = (width + E - 1) / E;
    auto with_slots = [&]<int S>() -> bool {
      void (*kernel)(Args) = kernel_for.template operator()<E, S>();
      static const int max_threads = [&] {
        cudaFuncAttributes attr;
        C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
        return attr.maxThreadsPerBlock;
      }();
      const int64_t threads = ((units + S - 1) / S + 31) / 32 * 32;
      if (threads > max_threads) return false;
      kernel<<<blocks, static_cast<unsigned>(threads), 0, stream()>>>(args);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return true;
    };
    return with_slots.template operator()<1>() || with_slots.template operator()<2>() ||
           with_slots.template operator()<4>();
  };
  const bool launched =
      (aligned && width % V == 0) ? with_vec.template operator()<V>() : with_vec.template operator()<1>();
  TORCH_CHECK(launched, "elp_fast CUDA row kernels: rows of ", width, " elements are too wide for one block");
}

// Runs f.template operator()<T>() for the element type code.
template <typename F>
inline void by_type(Dt t, F&& f) {
  switch (t) {
    case Dt::F32: return f.template operator()<float>();
    case Dt::BF16: return f.template operator()<c10::BFloat16>();
    case Dt::F16: return f.template operator()<c10::Half>();
  }
}

}  // namespace elp_fast::cuda
