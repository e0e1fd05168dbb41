// CUDA row kernels of layer_aggregate (the per-layer GEMMs are cuBLAS, issued by
// layer_aggregate.cpp): bias + activation + LayerNorm + weighted accumulation of one layer, one
// row per block with the row in registers; backward takes a chunk of rows per block, split over
// row groups that each hold one row at a time in registers, sums the parameter gradients per
// chunk in registers (the groups' partials in group order) and the logit gradient with a block
// reduction (no atomics).
#include "../common/cuda_utils.cuh"

namespace elp_fast::cuda {
namespace {

template <int E>
__device__ __forceinline__ int64_t col(int s) {
  return (int64_t(s) * blockDim.x + threadIdx.x) * E;
}

template <typename T, int E, int S>
__global__ void layer_fwd_kernel(LayerFwdArgs a) {
  __shared__ float red[32];
  const int64_t i = blockIdx.x, m = a.m;
  const T* z = static_cast<const T*>(a.z) + i * m;
  float* acc = a.acc + i * m;
  T* out = a.out ? static_cast<T*>(a.out) + i * m : nullptr;
  const float w = a.weights[a.layer];
  float h[S][E], p[E], q[E];
  float sum = 0.f;
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int64_t c = col<E>(s);
    if (c < m) {
      load<T, E>(z + c, h[s]);
      loadf<E>(a.b + c, p);
#pragma unroll
      for (int e = 0; e < E; ++e) sum += (h[s][e] = act_fwd(h[s][e] + p[e], a.act));
    }
  }
  const float mean = block_sum(sum, red) / float(m);
  float sq = 0.f;
#pragma unroll
  for (int s = 0; s < S; ++s)
    if (col<E>(s) < m)
#pragma unroll
      for (int e = 0; e < E; ++e) sq += (h[s][e] - mean) * (h[s][e] - mean);
  const float rstd = rsqrtf(block_sum(sq, red) / float(m) + a.eps);
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int64_t c = col<E>(s);
    if (c >= m) continue;
    loadf<E>(a.ln_w + c, p);
    loadf<E>(a.ln_b + c, q);
    float o[E];
    if (!a.first)  // acc is written by this kernel: plain loads, not the read-only cache
#pragma unroll
      for (int e = 0; e < E; ++e) o[e] = acc[c + e];
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const float t = w * ((h[s][e] - mean) * rstd * p[e] + q[e]);
      o[e] = a.first ? t : o[e] + t;
    }
#pragma unroll
    for (int e = 0; e < E; ++e) acc[c + e] = o[e];
    if (out) store<T, E>(out + c, o);
  }
  if (threadIdx.x == 0) {
    a.stats[2 * i] = mean;
    a.stats[2 * i + 1] = rstd;
  }
}

// One block per chunk of rows; row group threadIdx.y takes the chunk's rows [y * per, (y + 1) * per),
// per = ceil(chunk / groups). Every group walks `per` rows (rows past the end are computed on
// zeros and neither stored nor summed), so the group reductions synchronise the block in step.
template <typename T, int E, int S>
__global__ void layer_bwd_kernel(LayerBwdArgs a) {
  __shared__ float red[2][32];
  const int64_t m = a.m, c0 = int64_t(blockIdx.x) * a.chunk_rows, c1 = min(a.n, c0 + a.chunk_rows);
  const int64_t per = rows_per_group(a.chunk_rows);
  const int64_t g0 = c0 + threadIdx.y * per;
  const float w = a.weights[a.layer];
  float zb[S][E], q[S][E], g[S][E], p[E], lb[E];
  float acc[3][S][E];  // d_b, d_ln_w, d_ln_b for this thread's columns
#pragma unroll
  for (int k = 0; k < 3; ++k)
#pragma unroll
    for (int s = 0; s < S; ++s)
#pragma unroll
      for (int e = 0; e < E; ++e) acc[k][s][e] = 0.f;
  float gsum = 0.f;
  for (int64_t r = 0; r < per; ++r) {
    const int64_t i = g0 + r;
    const bool live = i < c1;  // the same for the whole row group
    const float mean = live ? a.stats[2 * i] : 0.f, rstd = live ? a.stats[2 * i + 1] : 0.f;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int64_t c = col<E>(s);
      if (!live || c >= m) {
#pragma unroll
        for (int e = 0; e < E; ++e) zb[s][e] = q[s][e] = g[s][e] = 0.f;
        continue;
      }
      float dh[E];
      load<T, E>(static_cast<const T*>(a.z) + i * m + c, zb[s]);
      load<T, E>(static_cast<const T*>(a.dH) + i * m + c, dh);
      loadf<E>(a.b + c, p);
#pragma unroll
      for (int e = 0; e < E; ++e) zb[s][e] += p[e];
      loadf<E>(a.ln_w + c, p);
      loadf<E>(a.ln_b + c, lb);
#pragma unroll
      for (int e = 0; e < E; ++e) {
        q[s][e] = (act_fwd(zb[s][e], a.act) - mean) * rstd;
        gsum += dh[e] * (q[s][e] * p[e] + lb[e]);
        const float dt = w * dh[e];
        acc[1][s][e] += dt * q[s][e];
        acc[2][s][e] += dt;
        g[s][e] = dt * p[e];
      }
    }
    // LayerNorm backward (both sums in one reduction over the row group), then the activation's
    float sums[2] = {0.f, 0.f};
#pragma unroll
    for (int s = 0; s < S; ++s)
#pragma unroll
      for (int e = 0; e < E; ++e) {
        sums[0] += g[s][e];
        sums[1] += g[s][e] * q[s][e];
      }
    group_sum<2>(sums, red);
    const float m1 = sums[0] / float(m), m2 = sums[1] / float(m);
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int64_t c = col<E>(s);
      if (!live || c >= m) continue;
      float dz[E];
#pragma unroll
      for (int e = 0; e < E; ++e) {
        dz[e] = rstd * (g[s][e] - m1 - q[s][e] * m2) * act_grad(zb[s][e], a.act);
        acc[0][s][e] += dz[e];
      }
      store<T, E>(static_cast<T*>(a.dz) + i * m + c, dz);
    }
  }
  add_row_groups<3, S, E>(acc);
  if (threadIdx.y == 0) {
    float* part = a.part + int64_t(blockIdx.x) * 3 * m;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int64_t c = col<E>(s);
      if (c >= m) continue;
#pragma unroll
      for (int k = 0; k < 3; ++k)
#pragma unroll
        for (int e = 0; e < E; ++e) part[k * m + c + e] = acc[k][s][e];
    }
  }
  const float total = block_sum(gsum, red[0]);  // over every thread of the block, all row groups
  if (threadIdx.x == 0 && threadIdx.y == 0) a.gpart[blockIdx.x] = total;
}

}  // namespace

void layer_fwd(const LayerFwdArgs& a) {
  if (a.n == 0) return;
  const bool aligned = aligned16(a.z) && aligned16(a.out);
  by_type(a.t, [&]<typename T>() {
    launch_rows<T>(a.m, aligned, a.n, a, []<int E, int S>() { return &layer_fwd_kernel<T, E, S>; });
  });
}

// One launch per layer (layer_aggregate.cpp interleaves each layer's kernel with its GEMMs); one
// block per chunk of rows, row groups from launch_rows (geometry: cuda_utils.cuh).
void layer_bwd(const LayerBwdArgs& a) {
  if (a.n == 0) return;
  const bool aligned = aligned16(a.z) && aligned16(a.dH) && aligned16(a.dz);
  by_type(a.t, [&]<typename T>() {
    launch_rows<T>(a.m, aligned, (a.n + a.chunk_rows - 1) / a.chunk_rows, a,
                   []<int E, int S>() { return &layer_bwd_kernel<T, E, S>; }, a.chunk_rows);
  });
}

}  // namespace elp_fast::cuda
