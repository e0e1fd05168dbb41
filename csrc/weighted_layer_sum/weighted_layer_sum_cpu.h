// CPU row kernels of weighted_layer_sum: the L hidden states are read in place through a
// pointer array (no stack), each element once per pass.
#pragma once
#include "../common/cpu_vec.h"

namespace elp_fast::cpu {
inline namespace CPU_CAPABILITY {

// Both passes walk the elements in blocks that stay in L1 and the layers one after another
// inside a block, so memory sees one or two streams at a time instead of L.
constexpr int64_t kBlock = 256 * W;

template <typename T>
void wsum_fwd(const WsumFwdArgs& a) {
  const T* const* h = reinterpret_cast<const T* const*>(a.h);
  T* out = static_cast<T*>(a.out);
  at::parallel_for(0, (a.n + kBlock - 1) / kBlock, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> acc(kBlock);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t e0 = b * kBlock, len = std::min(kBlock, a.n - e0);
      for (int64_t l = 0; l < a.layers; ++l) {
        const Vec w(a.weights[l]);
        for (int64_t j = 0; j < len; j += W) {
          const Vec t = w * load(h[l] + e0 + j, std::min(W, len - j));
          (l == 0 ? t : Vec::loadu(acc.data() + j) + t).store(acc.data() + j);
        }
      }
      for (int64_t j = 0; j < len; j += W) store(out + e0 + j, Vec::loadu(acc.data() + j), std::min(W, len - j));
    }
  });
}

template <typename T>
void wsum_bwd(const WsumBwdArgs& a) {
  const T* const* h = reinterpret_cast<const T* const*>(a.h);
  const T* dH = static_cast<const T*>(a.dH);
  const int64_t L = a.layers;
  for_chunks(a.n, a.chunk, [&](int64_t e0, int64_t e1, int64_t chunk) {
    std::vector<double> g(L, 0.0);  // per-lane float sums over a block, then added in double
    std::vector<float> d(kBlock);
    for (int64_t b0 = e0; b0 < e1; b0 += kBlock) {
      const int64_t len = std::min(e1, b0 + kBlock) - b0;
      row_to_float(dH + b0, d.data(), len);  // zero-padded past len
      for (int64_t l = 0; l < L; ++l) {
        const Vec w(a.weights[l]);
        Vec gb(0.f);
        for (int64_t j = 0; j < len; j += W) {
          const int64_t c = std::min(W, len - j);
          const Vec dv = Vec::loadu(d.data() + j);
          if (a.dh) store(static_cast<T*>(a.dh[l]) + b0 + j, w * dv, c);
          if (a.gpart) gb += dv * load(h[l] + b0 + j, c);
        }
        g[l] += hsum(gb);
      }
    }
    if (a.gpart)
      for (int64_t l = 0; l < L; ++l) a.gpart[chunk * L + l] = static_cast<float>(g[l]);
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace elp_fast::cpu
