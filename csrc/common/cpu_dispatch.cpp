// Picks the CPU row kernels for this CPU once: AVX-512, else AVX2, else the baseline build.
// ELP_FAST_CPU_ISA=default|avx2|avx512 forces one (tests use it to check every variant).
#include <c10/util/Exception.h>

#include <cstdlib>
#include <string>

#include "rows.h"

namespace elp_fast::cpu {
namespace DEFAULT { const RowKernels& row_kernels(); }
#if defined(__x86_64__) && !defined(ELP_FAST_NO_X86_ISA)
namespace AVX2 { const RowKernels& row_kernels(); }
namespace AVX512 { const RowKernels& row_kernels(); }
#endif
}  // namespace elp_fast::cpu

namespace elp_fast {
namespace {

const RowKernels& pick() {
  const char* env = std::getenv("ELP_FAST_CPU_ISA");
  const std::string want = env ? env : "";
#if defined(__x86_64__) && !defined(ELP_FAST_NO_X86_ISA)
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (want == "avx512") {
    TORCH_CHECK(avx512, "ELP_FAST_CPU_ISA=avx512, but this CPU lacks AVX-512 (F/BW/VL/DQ)");
    return cpu::AVX512::row_kernels();
  }
  if (want == "avx2") {
    TORCH_CHECK(avx2, "ELP_FAST_CPU_ISA=avx2, but this CPU lacks AVX2/FMA");
    return cpu::AVX2::row_kernels();
  }
  if (want.empty() || want == "auto") {
    if (avx512) return cpu::AVX512::row_kernels();
    if (avx2) return cpu::AVX2::row_kernels();
  }
#endif
  TORCH_CHECK(want.empty() || want == "auto" || want == "default",
              "ELP_FAST_CPU_ISA=", want, ": expected auto, default, avx2 or avx512 (x86-64 only)");
  return cpu::DEFAULT::row_kernels();
}

}  // namespace

// Not cached: the check is a getenv and two flag reads, and tests switch ISAs in one process.
const RowKernels& cpu_row_kernels() { return pick(); }

}  // namespace elp_fast
