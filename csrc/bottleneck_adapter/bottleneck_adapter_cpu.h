// CPU row kernels of bottleneck_adapter (templates; compiled once per instruction set by
// csrc/common/cpu_isa_*.cpp). Every row is converted to fp32 once, worked on in L1-resident
// buffers and written once: x, v, residual and dy are each read a single time per pass.
#pragma once
#include "../common/cpu_vec.h"

namespace elp_fast::cpu {
inline namespace CPU_CAPABILITY {

template <typename G>
void bias_act(const BiasActArgs& a) {
  const G* z = static_cast<const G*>(a.z);
  G* out = static_cast<G*>(a.a);
  const int64_t k = a.k;
  at::parallel_for(0, a.n, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i)
      for (int64_t j = 0; j < k; j += W) {
        const int64_t c = std::min(W, k - j);
        store(out + i * k + j, act_fwd(load(z + i * k + j, c) + load(a.b + j, c), a.act), c);
      }
  });
}

template <typename G>
void bias_act_grad(const BiasActGradArgs& a) {
  const G* da = static_cast<const G*>(a.da);
  const G* z = static_cast<const G*>(a.z);
  G* dz = static_cast<G*>(a.dz);
  const int64_t k = a.k;
  for_chunks(a.n, a.chunk_rows, [&](int64_t r0, int64_t r1, int64_t chunk) {
    float* db = a.db_part + chunk * k;
    std::fill(db, db + k, 0.f);
    for (int64_t i = r0; i < r1; ++i)
      for (int64_t j = 0; j < k; j += W) {
        const int64_t c = std::min(W, k - j);
        const Vec g = load(da + i * k + j, c) * act_grad(load(z + i * k + j, c) + load(a.b + j, c), a.act);
        store(dz + i * k + j, g, c);
        (load(db + j, c) + g).store(db + j, c);
      }
  });
}

template <typename T, typename G>
void adapter_out(const AdapterOutArgs& a) {
  const int64_t d = a.d;
  const G* v = static_cast<const G*>(a.v);
  const T* x = static_cast<const T*>(a.x);
  const T* res = static_cast<const T*>(a.res);
  T* y = static_cast<T*>(a.y);
  const bool post = a.post_w != nullptr;
  const int64_t nstat = post ? 4 : 2;
  at::parallel_for(0, a.n, 8, [&](int64_t r0, int64_t r1) {
    std::vector<float> buf(padded(d));
    float* vb = buf.data();
    for (int64_t i = r0; i < r1; ++i) {
      for (int64_t j = 0; j < d; j += W) {
        const int64_t c = std::min(W, d - j);
        (load(v + i * d + j, c) + load(a.up_b + j, c)).store(vb + j);
      }
      float mean, rstd;
      mean_rstd(vb, d, a.eps, mean, rstd);
      // vb becomes s = x + LN(vb) (+ res), in place
      for (int64_t j = 0; j < d; j += W) {
        const int64_t c = std::min(W, d - j);
        Vec s = load(x + i * d + j, c) +
                (Vec::loadu(vb + j) - Vec(mean)) * Vec(rstd) * load(a.ln_w + j, c) + load(a.ln_b + j, c);
        if (res) s += load(res + i * d + j, c);
        s.store(vb + j);
      }
      float* st = a.stats + i * nstat;
      st[0] = mean;
      st[1] = rstd;
      if (post) {
        float mean2, rstd2;
        mean_rstd(vb, d, a.eps, mean2, rstd2);
        st[2] = mean2;
        st[3] = rstd2;
        for (int64_t j = 0; j < d; j += W) {
          const int64_t c = std::min(W, d - j);
          const Vec out =
              (Vec::loadu(vb + j) - Vec(mean2)) * Vec(rstd2) * load(a.post_w + j, c) + load(a.post_b + j, c);
          store(y + i * d + j, out, c);
        }
      } else {
        for (int64_t j = 0; j < d; j += W) store(y + i * d + j, Vec::loadu(vb + j), std::min(W, d - j));
      }
    }
  });
}

// LayerNorm backward for one row: given g = dL/d(normalised) * gamma (in gbuf) and the
// normalised values xh, returns rstd * (g - mean(g) - xh * mean(g * xh)) into gbuf.
inline void ln_grad_row(float* gbuf, const float* xh, int64_t d, float rstd) {
  Vec s1(0.f), s2(0.f);
  for (int64_t j = 0; j < d; j += W) {
    const int64_t c = std::min(W, d - j);
    const Vec g = head(Vec::loadu(gbuf + j), c);
    s1 += g;
    s2 += g * Vec::loadu(xh + j);
  }
  const float m1 = hsum(s1) / float(d), m2 = hsum(s2) / float(d);
  for (int64_t j = 0; j < d; j += W)
    (Vec(rstd) * (Vec::loadu(gbuf + j) - Vec(m1) - Vec::loadu(xh + j) * Vec(m2))).store(gbuf + j);
}

template <typename T, typename G>
void adapter_out_grad(const AdapterOutGradArgs& a) {
  const int64_t d = a.d, pd = padded(d);
  const T* dy = static_cast<const T*>(a.dy);
  const G* v = static_cast<const G*>(a.v);
  const T* x = static_cast<const T*>(a.x);
  const T* res = static_cast<const T*>(a.res);
  G* dx1 = static_cast<G*>(a.dx1);
  T* dres = static_cast<T*>(a.dres);
  G* dv = static_cast<G*>(a.dv);
  const bool post = a.post_w != nullptr;
  const int64_t nstat = post ? 4 : 2;
  for_chunks(a.n, a.chunk_rows, [&](int64_t r0, int64_t r1, int64_t chunk) {
    // buffers: vh (normalised branch), sh (normalised pre-post-LN sum), g (running gradient)
    std::vector<float> buf(3 * pd, 0.f);
    float *vh = buf.data(), *sh = vh + pd, *g = sh + pd;
    float* part = a.part + chunk * 5 * d;  // d_up_b, d_ln_w, d_ln_b, d_post_w, d_post_b
    std::fill(part, part + 5 * d, 0.f);
    for (int64_t i = r0; i < r1; ++i) {
      const float* st = a.stats + i * nstat;
      for (int64_t j = 0; j < d; j += W) {
        const int64_t c = std::min(W, d - j);
        const Vec h = (load(v + i * d + j, c) + load(a.up_b + j, c) - Vec(st[0])) * Vec(st[1]);
        h.store(vh + j);
        const Vec dyv = load(dy + i * d + j, c);
        if (post) {
          Vec s = load(x + i * d + j, c) + h * load(a.ln_w + j, c) + load(a.ln_b + j, c);
          if (res) s += load(res + i * d + j, c);
          const Vec shv = (s - Vec(st[2])) * Vec(st[3]);
          shv.store(sh + j);
          (dyv * load(a.post_w + j, c)).store(g + j);
          (load(part + 3 * d + j, c) + dyv * shv).store(part + 3 * d + j, c);
          (load(part + 4 * d + j, c) + dyv).store(part + 4 * d + j, c);
        } else {
          dyv.store(g + j);
        }
      }
      if (post) ln_grad_row(g, sh, d, st[3]);
      // g is now dy1, the gradient of x + u + res
      for (int64_t j = 0; j < d; j += W) {
        const int64_t c = std::min(W, d - j);
        const Vec dy1 = Vec::loadu(g + j), h = Vec::loadu(vh + j);
        if (dx1) store(dx1 + i * d + j, dy1, c);
        if (dres) store(dres + i * d + j, dy1, c);
        (load(part + d + j, c) + dy1 * h).store(part + d + j, c);
        (load(part + 2 * d + j, c) + dy1).store(part + 2 * d + j, c);
        (dy1 * load(a.ln_w + j, c)).store(g + j);
      }
      ln_grad_row(g, vh, d, st[1]);
      for (int64_t j = 0; j < d; j += W) {
        const int64_t c = std::min(W, d - j);
        const Vec dvv = Vec::loadu(g + j);
        store(dv + i * d + j, dvv, c);
        (load(part + j, c) + dvv).store(part + j, c);
      }
    }
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace elp_fast::cpu
