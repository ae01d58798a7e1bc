/* Compile check: the whole header, implementation included, in one translation unit. */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
int fa_compile_check_impl(void);
int fa_compile_check_impl(void) { return (int)fa_dtype_size(FA_F32); }
