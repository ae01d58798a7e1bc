// Compile check: flashattn_cuda.cuh (and through it flashattn.h) under nvcc.
#define FLASHATTN_IMPLEMENTATION
#include "flashattn_cuda.cuh"
int fa_cuda_compile_check(void) { return (int)fa_dtype_size(FA_F16); }
