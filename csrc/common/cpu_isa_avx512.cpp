// CPU row kernels for AVX-512 (F, BW, VL, DQ). g++ does not define the ISA macros after
// `#pragma GCC target`, so they are defined here for the headers that test them (ATen vec, Sleef).
#if defined(__x86_64__) && !defined(ELP_FAST_NO_X86_ISA)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,avx,fma,f16c,bmi,bmi2,lzcnt,popcnt")
#ifndef __AVX512F__
#define __AVX512F__ 1
#define __AVX512BW__ 1
#define __AVX512VL__ 1
#define __AVX512DQ__ 1
#define __AVX2__ 1
#define __AVX__ 1
#define __FMA__ 1
#define __F16C__ 1
#endif
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#include "cpu_kernels.inc"
#endif
