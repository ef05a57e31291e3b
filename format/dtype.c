/* dtype: the table behind dtype.h. */
#include "format/dtype.h"

#include <string.h>

static const struct {
	const char *name;
	size_t size;
} dtypes[DT_COUNT] = {
	[UW_DTYPE_BOOL] = {"BOOL", 1},   [UW_DTYPE_U8] = {"U8", 1},
	[UW_DTYPE_I8] = {"I8", 1},       [UW_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
	[UW_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [UW_DTYPE_I16] = {"I16", 2},
	[UW_DTYPE_U16] = {"U16", 2},     [UW_DTYPE_F16] = {"F16", 2},
	[UW_DTYPE_BF16] = {"BF16", 2},   [UW_DTYPE_I32] = {"I32", 4},
	[UW_DTYPE_U32] = {"U32", 4},     [UW_DTYPE_F32] = {"F32", 4},
	[UW_DTYPE_F64] = {"F64", 8},     [UW_DTYPE_I64] = {"I64", 8},
	[UW_DTYPE_U64] = {"U64", 8},
};

int dtype_from_name(const char *name, size_t len)
{
	for (int i = 1; i < DT_COUNT; i++)
		if (strlen(dtypes[i].name) == len && memcmp(dtypes[i].name, name, len) == 0)
			return i;
	return DT_INVALID;
}

const char *dtype_name(int dtype)
{
	return dtype > 0 && dtype < DT_COUNT ? dtypes[dtype].name : NULL;
}

size_t dtype_size(int dtype)
{
	return dtype > 0 && dtype < DT_COUNT ? dtypes[dtype].size : 0;
}
