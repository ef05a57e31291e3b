/* crc32c: the Castagnoli CRC that checksums every stored payload. */
#ifndef UW_COMMON_CRC32C_H
#define UW_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC-32C over buf; start with crc = 0. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* Joining CRCs computed apart: with op from crc32c_zeros_op(len(B)),
 * crc32c(A || B) = crc32c_shift(op, crc32c(A)) ^ crc32c(B). */
void crc32c_zeros_op(size_t len, uint32_t op[32]);
uint32_t crc32c_shift(const uint32_t op[32], uint32_t crc);

#endif
