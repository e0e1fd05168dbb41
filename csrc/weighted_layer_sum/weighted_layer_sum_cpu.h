// CPU row kernels of weighted_layer_sum: the L hidden states are read in place through a
// pointer array (no stack), each element once per pass.
#pragma once
#include "../common/cpu_vec.h"

namespace elp_fast::cpu {
inline namespace CPU_CAPABILITY {

template <typename T>
void wsum_fwd(const WsumFwdArgs& a) {
  const T* const* h = reinterpret_cast<const T* const*>(a.h);
  T* out = static_cast<T*>(a.out);
  at::parallel_for(0, a.n, 4096, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; e += W) {
      const int64_t c = std::min(W, e1 - e);
      Vec acc = Vec(a.weights[0]) * load(h[0] + e, c);
      for (int64_t l = 1; l < a.layers; ++l) acc = acc + Vec(a.weights[l]) * load(h[l] + e, c);
      store(out + e, acc, c);
    }
  });
}

template <typename T>
void wsum_bwd(const WsumBwdArgs& a) {
  const T* const* h = reinterpret_cast<const T* const*>(a.h);
  const T* dH = static_cast<const T*>(a.dH);
  T* dh = static_cast<T*>(a.dh);
  const int64_t L = a.layers;
  constexpr int64_t kBlock = 64 * W;  // per-lane float sums over a block, then added in double
  for_chunks(a.n, a.chunk, [&](int64_t e0, int64_t e1, int64_t chunk) {
    std::vector<double> g(L, 0.0);
    std::vector<Vec> gb(L, Vec(0.f));
    for (int64_t b0 = e0; b0 < e1; b0 += kBlock) {
      const int64_t b1 = std::min(e1, b0 + kBlock);
      for (int64_t e = b0; e < b1; e += W) {
        const int64_t c = std::min(W, b1 - e);
        const Vec d = load(dH + e, c);
        for (int64_t l = 0; l < L; ++l) {
          if (dh) store(dh + l * a.n + e, Vec(a.weights[l]) * d, c);
          if (a.gpart) gb[l] += d * load(h[l] + e, c);
        }
      }
      for (int64_t l = 0; l < L; ++l) {
        g[l] += hsum(gb[l]);
        gb[l] = Vec(0.f);
      }
    }
    if (a.gpart)
      for (int64_t l = 0; l < L; ++l) a.gpart[chunk * L + l] = static_cast<float>(g[l]);
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace elp_fast::cpu
