/* crc32c: the Castagnoli CRC that checksums every stored payload. */
#ifndef UW_COMMON_CRC32C_H
#define UW_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC-32C over buf; start with crc = 0. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
