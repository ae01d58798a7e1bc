/* flashattn_cuda.cuh - optional CUDA companion of flashattn.h.

   The same fa_attn_desc / fa_merge_desc as the CPU library, run on an NVIDIA GPU. All tensor
   pointers in the descriptor are device pointers; index arrays (cu_seqlens, seqused_k,
   block_table) and per-head scale/slope arrays are device pointers too. Calls are asynchronous
   on the given stream; validation errors are returned before anything is launched.

   Include after (or instead of) flashattn.h; define FLASHATTN_IMPLEMENTATION in one .cu file to
   compile both the CPU and the CUDA implementations there. Build with nvcc (sm_80+).

   Status: declarations only so far. The kernels arrive with the CUDA work (see the README).
*/
#ifndef FLASHATTN_CUDA_CUH
#define FLASHATTN_CUDA_CUH

#include "flashattn.h"
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Attention forward on the GPU (fp16/bf16 Q/K/V/O; K/V may be FP8 with dequant scales). */
FLASHATTN_DEF fa_status fa_cuda_attn_forward(const fa_attn_desc *d, cudaStream_t stream);




#ifdef __cplusplus
}
#endif
#endif /* FLASHATTN_CUDA_CUH */
