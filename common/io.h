/* io: positioned reads and writes that move every byte, through EINTR and
 * short transfers, so each caller words its own error message. */
#ifndef UW_COMMON_IO_H
#define UW_COMMON_IO_H

#include <stddef.h>
#include <stdint.h>

/* Read n bytes of fd at off into buf. Returns 0, -errno when a read failed,
 * or -ENODATA when the file ended first. *done (may be NULL) is set to the
 * bytes moved before the failure, so the failing offset is off + *done. */
int io_pread_full(int fd, void *buf, size_t n, uint64_t off, size_t *done);

/* Write n bytes of buf to fd at off. Returns 0, -errno when a write failed,
 * or -ENODATA when a write moved nothing; *done as for io_pread_full. */
int io_pwrite_full(int fd, const void *buf, size_t n, uint64_t off, size_t *done);

#endif
