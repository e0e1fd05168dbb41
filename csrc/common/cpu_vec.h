// Vector helpers for the CPU row kernels. Included only by the cpu_isa_*.cpp files, each of which
// defines CPU_CAPABILITY (and its target) first, so everything here lands in a namespace per
// instruction set, as in ATen's own kernels.
#pragma once
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "rows.h"

namespace elp_fast::cpu {
inline namespace CPU_CAPABILITY {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t W = Vec::size();

// Load `count` (<= W) elements as floats; lanes past count are zero.
template <typename T>
inline Vec load(const T* p, int64_t count = W) {
  if (count == W) {
    Vec v;
    at::vec::load_to_float(p, v);
    return v;
  }
  float tmp[W] = {};
  for (int64_t i = 0; i < count; ++i) tmp[i] = static_cast<float>(p[i]);
  return Vec::loadu(tmp);
}
template <>
inline Vec load<float>(const float* p, int64_t count) {
  return count == W ? Vec::loadu(p) : Vec::loadu(p, count);
}

// Store the first `count` lanes, rounding to nearest even for half types.
template <typename T>
inline void store(T* p, const Vec& v, int64_t count = W) {
  if (count == W) {
    at::vec::convert_from_float<T>(v, v).store(p, W);
    return;
  }
  float tmp[W];
  v.store(tmp);
  for (int64_t i = 0; i < count; ++i) p[i] = static_cast<T>(tmp[i]);
}
template <>
inline void store<float>(float* p, const Vec& v, int64_t count) {
  if (count == W) v.store(p); else v.store(p, count);
}

// Lanes past `count` set to zero (keeps padded lanes out of reductions).
inline Vec head(const Vec& v, int64_t count) {
  return count == W ? v : Vec::set(Vec(0.f), v, count);
}

inline float hsum(const Vec& v) {
  return at::vec::vec_reduce_all<float>([](Vec& a, Vec& b) { return a + b; }, v);
}

// Exact (erf) GELU, as torch's default, and its derivative.
inline Vec act_fwd(const Vec& z, Act act) {
  if (act == Act::RELU) return at::vec::maximum(z, Vec(0.f));
  return z * Vec(0.5f) * (Vec(1.f) + (z * Vec(float(M_SQRT1_2))).erf());
}
inline Vec act_grad(const Vec& z, Act act) {
  if (act == Act::RELU) return Vec::blendv(Vec(0.f), Vec(1.f), z > Vec(0.f));
  const Vec cdf = Vec(0.5f) * (Vec(1.f) + (z * Vec(float(M_SQRT1_2))).erf());
  const Vec pdf = (z * z * Vec(-0.5f)).exp() * Vec(float(0.5 * M_2_SQRTPI * M_SQRT1_2));
  return cdf + z * pdf;
}

// Run body(row_begin, row_end, chunk_index) over fixed chunks of rows, in parallel. Partial sums
// are kept per chunk (not per thread), so results do not depend on the number of threads.
template <typename F>
inline void for_chunks(int64_t n, int64_t chunk_rows, const F& body) {
  const int64_t chunks = (n + chunk_rows - 1) / chunk_rows;
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) body(c * chunk_rows, std::min(n, (c + 1) * chunk_rows), c);
  });
}

// Load a row of n elements into a float buffer (zero-padded to a multiple of W).
template <typename T>
inline void row_to_float(const T* src, float* dst, int64_t n) {
  for (int64_t j = 0; j < n; j += W) load(src + j, std::min(W, n - j)).store(dst + j);
}

inline int64_t padded(int64_t n) { return (n + W - 1) / W * W; }

// Mean and 1/std (biased variance, two passes over a float buffer) as torch's layer_norm.
inline void mean_rstd(const float* v, int64_t n, float eps, float& mean, float& rstd) {
  Vec s(0.f);
  for (int64_t j = 0; j < n; j += W) s += load(v + j, std::min(W, n - j));
  mean = hsum(s) / float(n);
  Vec q(0.f);
  for (int64_t j = 0; j < n; j += W) {
    const int64_t c = std::min(W, n - j);
    const Vec dv = head(load(v + j, c) - Vec(mean), c);
    q += dv * dv;
  }
  rstd = 1.f / std::sqrt(hsum(q) / float(n) + eps);
}

}  // namespace CPU_CAPABILITY
}  // namespace elp_fast::cpu
