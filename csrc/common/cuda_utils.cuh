// Device helpers for the CUDA row kernels: fp32 math on T = float / c10::Half / c10::BFloat16,
// 16-byte vector loads, block and row-group reductions and the launch plan (threads x slots x
// vector width, and row groups for the chunked backward kernels).
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

template <int N>
__device__ __forceinline__ void warp_sum(float (&v)[N]) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] += __shfl_xor_sync(0xffffffffu, v[k], o);
}

// Sum over the block (1-D or 2-D); every thread gets the total. `shared` holds 32 floats.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  float t[1] = {v};
  warp_sum<1>(t);
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  const int warp = tid >> 5, lane = tid & 31, warps = (blockDim.x * blockDim.y + 31) >> 5;
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = t[0];
  __syncthreads();
  t[0] = lane < warps ? shared[lane] : 0.f;
  warp_sum<1>(t);
  return t[0];
}

// N sums over this thread's row group (the blockDim.x threads with its threadIdx.y; blockDim.x
// is a multiple of 32, so a warp never spans two groups); every thread of the group gets the
// totals. Each sum is added in the same order as block_sum over a 1-D block of blockDim.x
// threads. Every thread of the block must make the call (it synchronises the block when a group
// has several warps). `shared` holds N x 32 floats.
template <int N>
__device__ __forceinline__ void group_sum(float (&v)[N], float (*shared)[32]) {
  warp_sum<N>(v);
  const int wpg = blockDim.x >> 5;  // warps per group; blockDim.x * blockDim.y <= 1024
  if (wpg == 1) return;             // the same for the whole block
  const int lane = threadIdx.x & 31, base = threadIdx.y * wpg;
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0)
#pragma unroll
    for (int k = 0; k < N; ++k) shared[k][base + (threadIdx.x >> 5)] = v[k];
  __syncthreads();
#pragma unroll
  for (int k = 0; k < N; ++k) v[k] = lane < wpg ? shared[k][base + lane] : 0.f;
  warp_sum<N>(v);
}

// Chunked kernels: the rows of each row group, ceil(chunk_rows / blockDim.y), in 32-bit
// arithmetic (the launchers check chunk_rows <= kMaxChunkRows); once per thread.
constexpr int64_t kMaxChunkRows = 1 << 20;
__device__ __forceinline__ unsigned rows_per_group(int64_t chunk_rows) {
  return (static_cast<unsigned>(chunk_rows) + blockDim.y - 1) / blockDim.y;
}

// Chunked kernels: adds the row groups' partials acc (K sums of this thread's S x E columns) in
// group order 0, 1, ..., blockDim.y - 1 (fixed: the result does not depend on timing); group 0
// ends with the chunk's totals. Dynamic shared memory: (blockDim.y - 1) x blockDim.x x E floats
// (launch_rows sizes it). Every thread of the block must make the call.
template <int K, int S, int E>
__device__ __forceinline__ void add_row_groups(float (&acc)[K][S][E]) {
  extern __shared__ float row_groups_buf[];
  const int groups = blockDim.y, y = threadIdx.y, tx = blockDim.x, x = threadIdx.x;
  if (groups == 1) return;
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int s = 0; s < S; ++s) {
      __syncthreads();  // the previous round has been read
      if (y > 0)
#pragma unroll
        for (int e = 0; e < E; ++e) row_groups_buf[((y - 1) * tx + x) * E + e] = acc[k][s][e];
      __syncthreads();
      if (y == 0)
        for (int g = 1; g < groups; ++g)
#pragma unroll
          for (int e = 0; e < E; ++e) acc[k][s][e] += row_groups_buf[((g - 1) * tx + x) * E + e];
    }
}

inline bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

inline cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// Row groups of the chunked (backward) kernels: while a row needs few threads, the chunk's rows
// are split into up to kMaxRowGroups consecutive slices worked on at the same time, so that a
// block has about kChunkBlockThreads threads. At the realistic widths (d = 1024: 128 threads a
// row in 16-bit types, 256 in fp32; m = 256 / 512: 32 / 64 threads in 16-bit, 64 / 128 in fp32)
// that gives 256-thread blocks of 2, 8 / 4 and 4 / 2 groups, and one group for fp32 at d = 1024.
// 6,392 tokens make 400 chunks of 16 rows (the host's chunk size), i.e. 400 blocks for 132 SMs
// (3 per SM); two 256-thread blocks share an SM at <= 128 registers a thread (the realistic
// variants use fewer), and a group walks 16 / groups rows in sequence instead of 16.
constexpr int kChunkBlockThreads = 256;
constexpr int kMaxRowGroups = 8;

// The largest power of two g <= kMaxRowGroups, <= chunk_rows, with tx * g <= kChunkBlockThreads
// (1 when tx alone is that wide). tx * g <= max_threads is a guard only: every kernel takes 256
// threads (255 registers x 256 threads fit a block's 65,536). So g depends on tx alone (the row
// width, the element type, the 16-byte path) and a shape sums in the same order on every GPU.
inline int row_groups(int64_t tx, int64_t chunk_rows, int max_threads) {
  int g = 1;
  while (g * 2 <= kMaxRowGroups && g * 2 <= chunk_rows && tx * g * 2 <= kChunkBlockThreads &&
         tx * g * 2 <= max_threads)
    g *= 2;
  return g;
}

// Launches a row kernel kernel_for.template operator()<E, S>() (a pointer to kernel<T, E, S>) on
// `blocks` blocks. A row of `width` elements is spread over blockDim.x threads: each thread owns S
// groups of E consecutive elements, E = 16 bytes of T when every pointer and the width allow it,
// else 1, so a row's values and a thread's parameter-gradient partials stay in registers. S is the
// smallest of 1, 2, 4 whose block fits the kernel's register budget (cudaFuncGetAttributes).
// chunk_rows = 0: one row per block (1-D blocks). chunk_rows > 0: one chunk of chunk_rows rows per
// block, split over blockDim.y = row_groups(...) row groups, with the dynamic shared memory that
// add_row_groups needs.
template <typename T, typename Args, typename KernelFor>
inline void launch_rows(int64_t width, bool aligned, int64_t blocks, const Args& args, KernelFor&& kernel_for,
                        int64_t chunk_rows = 0) {
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
      const int groups = chunk_rows > 0 ? row_groups(threads, chunk_rows, max_threads) : 1;
      const size_t shared = size_t(groups - 1) * size_t(threads) * E * sizeof(float);
      kernel<<<static_cast<unsigned>(blocks), dim3(static_cast<unsigned>(threads), static_cast<unsigned>(groups)),
               shared, stream()>>>(args);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return true;
    };
    return with_slots.template operator()<1>() || with_slots.template operator()<2>() ||
           with_slots.template operator()<4>();
  };
  TORCH_CHECK(blocks <= 0x7fffffff, "elp_fast CUDA row kernels: ", blocks, " blocks are more than one launch takes");
  TORCH_CHECK(chunk_rows >= 0 && chunk_rows <= kMaxChunkRows, "elp_fast CUDA row kernels: chunks of ", chunk_rows,
              " rows; expected at most ", kMaxChunkRows);
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
