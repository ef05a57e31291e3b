/* dtype: the safetensors element types, their names and sizes. */
#ifndef UW_FORMAT_DTYPE_H
#define UW_FORMAT_DTYPE_H

#include <stddef.h>

#include "unweight.h"

/* The ids are enum uw_dtype of unweight.h; 0 is invalid. */
#define DT_INVALID 0
#define DT_COUNT (UW_DTYPE_U64 + 1)

/* "BF16" -> DT_BF16; DT_INVALID for anything unknown. len: bytes of name. */
int dtype_from_name(const char *name, size_t len);
/* DT_BF16 -> "BF16"; NULL when out of range. */
const char *dtype_name(int dtype);
/* Bytes per element; 0 when out of range. */
size_t dtype_size(int dtype);

#endif
