/* Compile check: a program of two translation units; this one holds the implementation. */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
#include "flashattn.h" /* a second include must be harmless */
