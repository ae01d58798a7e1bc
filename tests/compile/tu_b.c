/* Compile check: the second translation unit uses only the declarations. */
#include <stdio.h>
#include "flashattn.h"
int main(void)
{
    if (fa_dtype_size(FA_BF16) != 2) return 1;
    printf("two TUs: %s %s\n", FLASHATTN_VERSION_STRING, fa_status_str(FA_OK));
    return 0;
}
