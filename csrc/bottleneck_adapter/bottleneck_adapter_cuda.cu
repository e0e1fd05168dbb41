// CUDA row kernels of bottleneck_adapter (the GEMMs are cuBLAS, issued by bottleneck_adapter.cpp).
// Rows of d elements are spread over one block (forward) or one row group of a block (backward);
// each thread keeps its slots x vec values in registers, reads and writes them with 16-byte
// accesses, and the two LayerNorms reduce over the row's threads. Parameter gradients are summed
// per chunk of rows in registers, the row groups' partials then in group order: no atomics.
#include "../common/cuda_utils.cuh"

namespace elp_fast::cuda {
namespace {

// a = act(z + b) over (n, k) rows, 2-D: threadIdx.x walks the row's k / E groups of E columns,
// threadIdx.y picks one of blockDim.y rows, the grid strides over the rows (no index division).
template <typename T, int E>
__global__ void bias_act_kernel(const T* __restrict__ z, const float* __restrict__ b, T* __restrict__ a,
                                int64_t n, int64_t k, Act act) {
  const int64_t units = k / E;  // E divides k (bias_act picks E so)
  for (int64_t i = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; i < n; i += int64_t(gridDim.x) * blockDim.y) {
    const T* zi = z + i * k;
    T* ai = a + i * k;
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
      float v[E], p[E];
      load<T, E>(zi + u * E, v);
      loadf<E>(b + u * E, p);
#pragma unroll
      for (int e = 0; e < E; ++e) v[e] = act_fwd(v[e] + p[e], act);
      store<T, E>(ai + u * E, v);
    }
  }
}

// One block per chunk of rows, block (columns, row groups): threadIdx.x strides over the k columns,
// row group threadIdx.y takes the chunk's rows [y * per, (y + 1) * per) with per = ceil(chunk /
// groups), sums d_bias over them in row order, and the groups' sums are added in group order.
template <typename T>
__global__ void bias_act_grad_kernel(const T* __restrict__ da, const T* __restrict__ z, const float* __restrict__ b,
                                     T* __restrict__ dz, float* __restrict__ part, int64_t n, int64_t k,
                                     int64_t chunk_rows, Act act) {
  extern __shared__ float groups_buf[];  // (groups - 1) x blockDim.x floats
  const int x = threadIdx.x, y = threadIdx.y, tx = blockDim.x, groups = blockDim.y;
  const int64_t c0 = int64_t(blockIdx.x) * chunk_rows, c1 = min(n, c0 + chunk_rows);
  const int64_t per = rows_per_group(chunk_rows);
  const int64_t r0 = min(c1, c0 + y * per), r1 = min(c1, r0 + per);
  for (int64_t j0 = 0; j0 < k; j0 += tx) {  // the same trip count in every thread: the block synchronises
    const int64_t j = j0 + x;
    float acc = 0.f;
    if (j < k) {
      const float bj = b[j];
#pragma unroll 4
      for (int64_t i = r0; i < r1; ++i) {
        const float g = static_cast<float>(da[i * k + j]) * act_grad(static_cast<float>(z[i * k + j]) + bj, act);
        dz[i * k + j] = static_cast<T>(g);
        acc += g;
      }
    }
    if (groups > 1) {
      __syncthreads();  // the previous column round has been read
      if (y > 0) groups_buf[(y - 1) * tx + x] = acc;
      __syncthreads();
      if (y == 0)
        for (int g = 1; g < groups; ++g) acc += groups_buf[(g - 1) * tx + x];
    }
    if (y == 0 && j < k) part[int64_t(blockIdx.x) * k + j] = acc;
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

// LayerNorm backward over the row group: g <- rstd * (g - mean(g) - xh * mean(g * xh)); both sums
// in one reduction.
template <int E, int S>
__device__ __forceinline__ void ln_grad(float (&g)[S][E], const float (&xh)[S][E], int64_t d, float rstd,
                                        float (*red)[32]) {
  float sums[2] = {0.f, 0.f};
#pragma unroll
  for (int s = 0; s < S; ++s)
    if (col<E>(s, 0) < d)
#pragma unroll
      for (int e = 0; e < E; ++e) {
        sums[0] += g[s][e];
        sums[1] += g[s][e] * xh[s][e];
      }
  group_sum<2>(sums, red);
  const float m1 = sums[0] / float(d);
  const float m2 = sums[1] / float(d);
#pragma unroll
  for (int s = 0; s < S; ++s)
#pragma unroll
    for (int e = 0; e < E; ++e) g[s][e] = rstd * (g[s][e] - m1 - xh[s][e] * m2);
}

// One block per chunk of rows; row group threadIdx.y takes the chunk's rows [y * per, (y + 1) * per),
// per = ceil(chunk / groups), one row at a time over its blockDim.x threads. Every group walks
// `per` rows (rows past the end are computed on zeros and neither stored nor summed), so the
// group reductions synchronise the whole block in step.
template <typename T, int E, int S>
__global__ void adapter_out_grad_kernel(AdapterOutGradArgs a) {
  __shared__ float red[2][32];
  const int64_t d = a.d, c0 = int64_t(blockIdx.x) * a.chunk_rows, c1 = min(a.n, c0 + a.chunk_rows);
  const int64_t per = rows_per_group(a.chunk_rows);
  const int64_t g0 = c0 + threadIdx.y * per;
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
  for (int64_t r = 0; r < per; ++r) {
    const int64_t i = g0 + r;
    const bool live = i < c1;  // the same for the whole row group
    float mean = 0.f, rstd = 0.f, rstd2 = 0.f, mean2 = 0.f;
    if (live) {
      const float* st = a.stats + i * nstat;
      mean = st[0];
      rstd = st[1];
      if (post) {
        mean2 = st[2];
        rstd2 = st[3];
      }
    }
    const int64_t off = i * d;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int64_t c = col<E>(s, 0);
      if (!live || c >= d) {
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
          sh[s][e] = (sv[e] - mean2) * rstd2;
          acc[3][s][e] += g[s][e] * sh[s][e];
          acc[4][s][e] += g[s][e];
          g[s][e] *= p[e];
        }
      }
    }
    if (post) ln_grad<E, S>(g, sh, d, rstd2, red);
    // g is dy1, the gradient of x + u + res
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int64_t c = col<E>(s, 0);
      if (!live || c >= d) continue;
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
      if (!live || c >= d) continue;
      store<T, E>(static_cast<T*>(a.dv) + off + c, g[s]);
#pragma unroll
      for (int e = 0; e < E; ++e) acc[0][s][e] += g[s][e];
    }
  }
  add_row_groups<5, S, E>(acc);
  if (threadIdx.y != 0) return;
  float* part = a.part + int64_t(blockIdx.x) * 5 * d;
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

}  // namespace

// 2-D blocks of 128 threads: E-wide column groups along x (16-byte accesses when z, a and k
// allow), 128 / x-threads rows along y. Realistic sizes (6,392 tokens, r = 64 / 256, 16-bit
// types): 8 / 32 column groups a row, i.e. 16 / 4 rows a block, 400 / 1,598 blocks (3 / 12 per
// SM on 132 SMs), each thread one 16-byte group.
void bias_act(const BiasActArgs& a) {
  if (a.n == 0 || a.k == 0) return;
  by_type(a.g, [&]<typename T>() {
    constexpr int V = 16 / sizeof(T);
    const bool vec = aligned16(a.z) && aligned16(a.a) && a.k % V == 0;
    const int64_t units = vec ? a.k / V : a.k;
    int tx = 1;
    while (tx < units && tx < 128) tx *= 2;
    const int ty = 128 / tx;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((a.n + ty - 1) / ty, 65535LL * 32));
    const dim3 block(static_cast<unsigned>(tx), static_cast<unsigned>(ty));
    const T* z = static_cast<const T*>(a.z);
    T* out = static_cast<T*>(a.a);
    if (vec)
      bias_act_kernel<T, V><<<blocks, block, 0, stream()>>>(z, a.b, out, a.n, a.k, a.act);
    else
      bias_act_kernel<T, 1><<<blocks, block, 0, stream()>>>(z, a.b, out, a.n, a.k, a.act);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// One block per chunk of chunk_rows (16) rows: x-threads over the k columns (up to 256), row
// groups along y up to 512 threads. Realistic sizes (6,392 tokens, r = 64 / 256): 400 blocks of
// 64 x 8 / 256 x 2 threads, each group 2 / 8 rows; 400 blocks (3 per SM on 132 SMs) is the
// host's chunk count.
void bias_act_grad(const BiasActGradArgs& a) {
  if (a.n == 0 || a.k == 0) return;
  const int tx = static_cast<int>(std::min<int64_t>(256, (a.k + 31) / 32 * 32));
  const int64_t blocks = (a.n + a.chunk_rows - 1) / a.chunk_rows;
  TORCH_CHECK(blocks <= 0x7fffffff, "elp_fast CUDA row kernels: ", blocks, " blocks are more than one launch takes");
  TORCH_CHECK(a.chunk_rows > 0 && a.chunk_rows <= kMaxChunkRows, "elp_fast CUDA row kernels: chunks of ",
              a.chunk_rows, " rows; expected 1 to ", kMaxChunkRows);
  by_type(a.g, [&]<typename T>() {
    static const int max_threads = [] {
      cudaFuncAttributes attr;
      C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, &bias_act_grad_kernel<T>));
      return attr.maxThreadsPerBlock;
    }();
    int groups = 1;
    while (groups * 2 <= kMaxRowGroups && groups * 2 <= a.chunk_rows && tx * groups * 2 <= 512 &&
           tx * groups * 2 <= max_threads)
      groups *= 2;
    const size_t shared = size_t(groups - 1) * tx * sizeof(float);
    bias_act_grad_kernel<T><<<static_cast<unsigned>(blocks), dim3(tx, groups), shared, stream()>>>(
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

// One block per chunk of rows, row groups from launch_rows (geometry: cuda_utils.cuh).
void adapter_out_grad(const AdapterOutGradArgs& a) {
  if (a.n == 0) return;
  const bool aligned = aligned16(a.dy) && aligned16(a.v) && aligned16(a.x) && aligned16(a.res) &&
                       aligned16(a.dx1) && aligned16(a.dres) && aligned16(a.dv);
  by_type(a.t, [&]<typename T>() {
    launch_rows<T>(a.d, aligned, (a.n + a.chunk_rows - 1) / a.chunk_rows, a,
                   []<int E, int S>() { return &adapter_out_grad_kernel<T, E, S>; }, a.chunk_rows);
  });
}

}  // namespace elp_fast::cuda
