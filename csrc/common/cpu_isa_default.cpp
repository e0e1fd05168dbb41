// CPU row kernels for the baseline instruction set (any CPU; ATen's generic vectors).
#define CPU_CAPABILITY DEFAULT
#include "cpu_kernels.inc"
