// CPU row kernels of layer_aggregate: one layer's bias + activation + LayerNorm + weighted
// accumulation (forward) and its gradient (backward), on the (N, m) output of the layer's GEMM.
#pragma once
#include "../common/cpu_vec.h"
#include "../bottleneck_adapter/bottleneck_adapter_cpu.h"  // ln_grad_row

namespace elp_fast::cpu {
inline namespace CPU_CAPABILITY {

template <typename T, typename G>
void layer_fwd(const LayerFwdArgs& a) {
  const int64_t m = a.m;
  const G* z = static_cast<const G*>(a.z);
  T* out = static_cast<T*>(a.out);
  const Vec w(a.weights[a.layer]);
  at::parallel_for(0, a.n, 8, [&](int64_t r0, int64_t r1) {
    std::vector<float> buf(padded(m));
    float* h = buf.data();
    for (int64_t i = r0; i < r1; ++i) {
      for (int64_t j = 0; j < m; j += W) {
        const int64_t c = std::min(W, m - j);
        act_fwd(load(z + i * m + j, c) + load(a.b + j, c), a.act).store(h + j);
      }
      float mean, rstd;
      mean_rstd(h, m, a.eps, mean, rstd);
      a.stats[2 * i] = mean;
      a.stats[2 * i + 1] = rstd;
      float* acc = a.acc + i * m;
      for (int64_t j = 0; j < m; j += W) {
        const int64_t c = std::min(W, m - j);
        Vec t = w * ((Vec::loadu(h + j) - Vec(mean)) * Vec(rstd) * load(a.ln_w + j, c) + load(a.ln_b + j, c));
        if (!a.first) t = load(acc + j, c) + t;
        t.store(acc + j, c);
        if (out) store(out + i * m + j, t, c);
      }
    }
  });
}

template <typename T, typename G>
void layer_bwd(const LayerBwdArgs& a) {
  const int64_t m = a.m, pm = padded(m);
  const T* dH = static_cast<const T*>(a.dH);
  const G* z = static_cast<const G*>(a.z);
  G* dz = static_cast<G*>(a.dz);
  const Vec w(a.weights[a.layer]);
  for_chunks(a.n, a.chunk_rows, [&](int64_t r0, int64_t r1, int64_t chunk) {
    std::vector<float> buf(3 * pm, 0.f);
    float *zb = buf.data(), *q = zb + pm, *g = q + pm;
    float* part = a.part + chunk * 3 * m;  // d_b, d_ln_w, d_ln_b
    std::fill(part, part + 3 * m, 0.f);
    double gsum = 0.0;  // the logit gradient sums N * m products: rows are added in double
    for (int64_t i = r0; i < r1; ++i) {
      const float mean = a.stats[2 * i], rstd = a.stats[2 * i + 1];
      Vec grow(0.f);
      for (int64_t j = 0; j < m; j += W) {
        const int64_t c = std::min(W, m - j);
        const Vec zv = load(z + i * m + j, c) + load(a.b + j, c);
        zv.store(zb + j);
        const Vec qv = (act_fwd(zv, a.act) - Vec(mean)) * Vec(rstd);
        qv.store(q + j);
        const Vec dh = load(dH + i * m + j, c);
        const Vec lw = load(a.ln_w + j, c);
        grow += dh * (qv * lw + load(a.ln_b + j, c));  // zero past c: dh is zero-filled
        const Vec dt = w * dh;
        (load(part + m + j, c) + dt * qv).store(part + m + j, c);
        (load(part + 2 * m + j, c) + dt).store(part + 2 * m + j, c);
        (dt * lw).store(g + j);
      }
      gsum += hsum(grow);
      ln_grad_row(g, q, m, rstd);
      for (int64_t j = 0; j < m; j += W) {
        const int64_t c = std::min(W, m - j);
        const Vec dzv = Vec::loadu(g + j) * act_grad(Vec::loadu(zb + j), a.act);
        store(dz + i * m + j, dzv, c);
        (load(part + j, c) + dzv).store(part + j, c);
      }
    }
    a.gpart[chunk] = static_cast<float>(gsum);
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace elp_fast::cpu
