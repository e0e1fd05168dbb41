// CPU row kernels for AVX2 + FMA (see cpu_isa_avx512.cpp for why the macros are defined here).
#if defined(__x86_64__) && !defined(ELP_FAST_NO_X86_ISA)
#pragma GCC target("avx2,avx,fma,f16c,bmi,bmi2,lzcnt,popcnt")
#ifndef __AVX2__
#define __AVX2__ 1
#define __AVX__ 1
#define __FMA__ 1
#define __F16C__ 1
#endif
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "cpu_kernels.inc"
#endif
