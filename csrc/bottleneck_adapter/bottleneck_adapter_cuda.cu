// CUDA row kernels of bottleneck_adapter (the GEMMs are cuBLAS, issued by bottleneck_adapter.cpp).
// Rows of d elements are spread over one block; each thread keeps its slots x vec values in
// registers, reads and writes them with 16-byte accesses, and the two LayerNorms reduce over the
// block. Parameter gradients are summed per chunk of rows in registers: no atomics.
#include "../common/cuda_utils.cuh"

namespace elp_fast::cuda {
namespace {

template <typename T>
__global__ void bias_act_kernel(const T* __restrict__ z, const float* __restrict__ b, T* __restrict__ a,
                                int64_t n, int64_t k, Act act) {
  const int64_t total = n * k;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    a[idx] = static_cast<T>(act_fwd(static_cast<float>(z[idx]) + __ldg(b + idx % k), act));
  }
}

// One block per chunk of rows; threads stride over the k columns and sum d_bias over the rows.
template <typename T>
__global__ void bias_act_grad_kernel(const T* __restrict__ da, const T* __restrict__ z, const float* __restrict__ b,
                                     T* __restrict__ dz, float* __restrict__ part, int64_t n, int64_t k,
                                     int64_t chunk_rows, Act act) {
  const int64_t r0 = blockIdx.x * chunk_rows, r1 = min(n, r0 + chunk_rows);
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
    const float bj = b[j];
    float acc = 0.f;
    for (int64_t i = r0; i < r1; ++i) {
      const float g = static_cast<float>(da[i * k + j]) * act_grad(static_cast<float>(z[i * k + j]) + bj, act);
      dz[i * k + j] = static_cast<T>(g);
      acc += g;
    }
    part[blockIdx.x * k + j] = acc;
  }
}

// Column of element (slot s, lane e) for this thread.
template <int E>
__device__ __forceinline__ int64_t col(int s, int e) {
  return (int64_t(s) * blockDim.x + threadIdx.x) * E + e;
}

template <typename T, int E, int S>
__global__ void adapter_out_kernel(AdapterOutArgs a) {
  __shared__ float red[32];
  const int64_t i = blockIdx.x, d = a.d;
  const T* v = static_cast<const T*>(a.v) + i * d;
  const T* x = static_cast<const T*>(a.x) + i * d;
  const T* res = a.res ? static_cast<const T*>(a.res) + i * d : nullptr;
  T* y = static_cast<T*>(a.y) + i * d;
  const bool post = a.post_w != nullptr;
  float h[S][E], t[E], p[E];
  float sum = 0.f;
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int64_t c = col<E>(s, 0);
    if (c < d) {
      load<T, E>(v + c, h[s]);
      loadf<E>(a.up_b + c, p);
#pragma unroll
      for (int e = 0; e < E; ++e) sum += (h[s][e] += p[e]);
    }
  }
  const float mean = block_sum(sum, red) / float(d);
  float sq = 0.f;
#pragma unroll
  for (int s = 0; s < S; ++s)
    if (col<E>(s, 0) < d)
#pragma unroll
      for (int e = 0; e < E; ++e) sq += (h[s][e] - mean) * (h[s][e] - mean);
  const float rstd = rsqrtf(block_sum(sq, red) / float(d) + a.eps);
  // h becomes s = x + LN(v + up_b) (+ res)
  float sum2 = 0.f;
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int64_t c = col<E>(s, 0);
    if (c < d) {
      load<T, E>(x + c, t);
      loadf<E>(a.ln_w + c, p);
#pragma unroll
      for (int e = 0; e < E; ++e) h[s][e] = t[e] + (h[s][e] - mean) * rstd * p[e];
      loadf<E>(a.ln_b + c, p);
#pragma unroll
      for (int e = 0; e < E; ++e) h[s][e] += p[e];
      if (res) {
        load<T, E>(res + c, t);
#pragma unroll
        for (int e = 0; e < E; ++e) h[s][e] += t[e];
      }
#pragma unroll
      for (int e = 0; e < E; ++e) sum2 += h[s][e];
    }
  }
  float mean2 = 0.f, rstd2 = 1.f;
  if (post) {
    mean2 = block_sum(sum2, red) / float(d);
    float sq2 = 0.f;
#pragma unroll
    for (int s = 0; s < S; ++s)
      if (col<E>(s, 0) < d)
#pragma unroll
        for (int e = 0; e < E; ++e) sq2 += (h[s][e] - mean2) * (h[s][e] - mean2);
    rstd2 = rsqrtf(block_sum(sq2, red) / float(d) + a.eps);
  }
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int64_t c = col<E>(s, 0);
    if (c < d) {
      if (post) {
        loadf<E>(a.post_w + c, p);
        loadf<E>(a.post_b + c, t);
#pragma unroll
        for (int e = 0; e < E; ++e) h[s][e] = (h[s][e] - mean2) * rstd2 * p[e] + t[e];
      }
      store<T, E>(y + c, h[s]);
    }
  }
  if (threadIdx.x == 0) {
    float* st = a.stats + i * (post ? 4 : 2);
    st[0] = mean;
    st[1] = rstd;
    if (post) {
      st[2] = mean2;
      st[3] = rstd2;
    }
  }
}

// LayerNorm backward over the block: g <- rstd * (g - mean(g) - xh * mean(g * xh)).
template <int E, int S>
__device__ __forceinline__ void ln_grad(float (&g)[S][E], const float (&xh)[S][E], int64_t d, float rstd,
                                        float* red) {
  float s1 = 0.f, s2 = 0.f;
#pragma unroll
  for (int s = 0; s < S; ++s)
    if (col<E>(s, 0) < d)
#pragma unroll
      for (int e = 0; e < E; ++e) {
        s1 += g[s][e];
        s2 += g[s][e] * xh[s][e];
      }
  const float m1 = block_sum(s1, red) / float(d);
  const float m2 = block_sum(s2, red) / float(d);
#pragma unroll
  for (int s = 0; s < S; ++s)
#pragma unroll
    for (int e = 0; e < E; ++e) g[s][e] = rstd * (g[s][e] - m1 - xh[s][e] * m2);
}

template <typename T, int E, int S>
__global__ void adapter_out_grad_kernel(AdapterOutGradArgs a) {
  __shared__ float red[32];
  const int64_t d = a.d, r0 = blockIdx.x * a.chunk_rows, r1 = min(a.n, r0 + a.chunk_rows);
  const bool post = a.post_w != nullptr;
  const int nstat = post ? 4 : 2;
  float vh[S][E], sh[S][E], g[S][E], t[E], p[E];
  float acc[5][S][E];  // d_up_b, d_ln_w, d_ln_b, d_post_w, d_post_b for this thread's columns
#pragma unroll
  for (int k = 0; k < 5; ++k)
#pragma unroll
    for (int s = 0; s < S; ++s)
#pragma unroll
      for (int e = 0; e < E; ++e) acc[k][s][e] = 0.f;
  for (int64_t i = r0; i < r1; ++i) {
    const float* st = a.stats + i * nstat;
    const float mean = st[0], rstd = st[1];
    const int64_t off = i * d;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int64_t c = col<E>(s, 0);
      if (c >= d) {
#pragma unroll
        for (int e = 0; e < E; ++e) vh[s][e] = sh[s][e] = g[s][e] = 0.f;
        continue;
      }
      load<T, E>(static_cast<const T*>(a.v) + off + c, vh[s]);
      loadf<E>(a.up_b + c, p);
#pragma unroll
      for (int e = 0; e < E; ++e) vh[s][e] = (vh[s][e] + p[e] - mean) * rstd;
      load<T, E>(static_cast<const T*>(a.dy) + off + c, g[s]);
      if (post) {
        float sv[E];
        load<T, E>(static_cast<const T*>(a.x) + off + c, sv);
        loadf<E>(a.ln_w + c, p);
#pragma unroll
        for (int e = 0; e < E; ++e) sv[e] += vh[s][e] * p[e];
        loadf<E>(a.ln_b + c, p);
#pragma unroll
        for (int e = 0; e < E; ++e) sv[e] += p[e];
        if (a.res) {
          load<T, E>(static_cast<const T*>(a.res) + off + c, t);
#pragma unroll
          for (int e = 0; e < E; ++e) sv[e] += t[e];
        }
        loadf<E>(a.post_w + c, p);
#pragma unroll
        for (int e = 0; e < E; ++e) {
          sh[s][e] = (sv[e] - st[2]) * st[3];
          acc[3][s][e] += g[s][e] * sh[s][e];
          acc[4][s][e] += g[s][e];
          g[s][e] *= p[e];
        }
      }
    }
    if (post) ln_grad<E, S>(g, sh, d, st[3], red);
    // g is dy1, the gradient of x + u + res
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int64_t c = col<E>(s, 0);
      if (c >= d) continue;
      if (a.dx1) store<T, E>(static_cast<T*>(a.dx1) + off + c, g[s]);
      if (a.dres) store<T, E>(static_cast<T*>(a.dres) + off + c, g[s]);
      loadf<E>(a.ln_w + c, p);
#pragma unroll
      for (int e = 0; e < E; ++e) {
        acc[1][s][e] += g[s][e] * vh[s][e];
        acc[2][s][e] += g[s][e];
        g[s][e] *= p[e];
      }
    }
    ln_grad<E, S>(g, vh, d, rstd, red);
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int64_t c = col<E>(s, 0);
      if (c >= d) continue;
      store<T, E>(static_cast<T*>(a.dv) + off + c, g[s]);
#pragma unroll
      for (int e = 0; e < E; ++e) acc[0][s][e] += g[s][e];
    }
  }
  float* part = a.part + blockIdx.x * 5 * d;
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int64_t c = col<E>(s, 0);
    if (c >= d) continue;
#pragma unroll
    for (int k = 0; k < 5; ++k)
#pragma unroll
      for (int e = 0; e < E; ++e) part[k * d + c + e] = acc[k][s][e];
  }
}

int grid_for(int64_t total, int threads) {
  return static_cast<int>(std::min<int64_t>((total + threads - 1) / threads, 65535LL * 32));
}

}  // namespace

void bias_act(const BiasActArgs& a) {
  if (a.n * a.k == 0) return;
  by_type(a.g, [&]<typename T>() {
    bias_act_kernel<T><<<grid_for(a.n * a.k, 256), 256, 0, stream()>>>(
        static_cast<const T*>(a.z), a.b, static_cast<T*>(a.a), a.n, a.k, a.act);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void bias_act_grad(const BiasActGradArgs& a) {
  if (a.n == 0) return;
  const int threads = static_cast<int>(std::min<int64_t>(256, (a.k + 31) / 32 * 32));
  by_type(a.g, [&]<typename T>() {
    bias_act_grad_kernel<T><<<(a.n + a.chunk_rows - 1) / a.chunk_rows, threads, 0, stream()>>>(
        static_cast<const T*>(a.da), static_cast<const T*>(a.z), a.b, static_cast<T*>(a.dz), a.db_part, a.n, a.k,
        a.chunk_rows, a.act);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void adapter_out(const AdapterOutArgs& a) {
  if (a.n == 0) return;
  const bool aligned = aligned16(a.v) && aligned16(a.x) && aligned16(a.res) && aligned16(a.y);
  by_type(a.t, [&]<typename T>() {
    launch_rows<T>(a.d, aligned, a.n, a, []<int E, int S>() { return &adapter_out_kernel<T, E, S>; });
  });
}

void adapter_out_grad(const AdapterOutGradArgs& a) {
  if (a.n == 0) return;
  const bool aligned = aligned16(a.dy) && aligned16(a.v) && aligned16(a.x) && aligned16(a.res) &&
                       aligned16(a.dx1) && aligned16(a.dres) && aligned16(a.dv);
  by_type(a.t, [&]<typename T>() {
    launch_rows<T>(a.d, aligned, (a.n + a.chunk_rows - 1) / a.chunk_rows, a,
                   []<int E, int S>() { return &adapter_out_grad_kernel<T, E, S>; });
  });
}

}  // namespace elp_fast::cuda
