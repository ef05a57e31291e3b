/* filemap: a checkpoint file mapped read-only so that the GPU copies a
 * tensor straight from its page-cache pages (registered with the driver
 * for the copy), when every page of the file is in the page cache: no read
 * into a buffer, no copy into pinned staging. The CPU never reads through
 * the mapping (a file truncated under it would raise SIGBUS there; the
 * driver's registration of a page past the end fails instead, cleanly):
 * what the CPU needs of such a file it preads (filemap_pread). */
#ifndef UWD_FILEMAP_H
#define UWD_FILEMAP_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Map fd's size bytes when its pages are in the page cache (4096 of them
 * sampled evenly, the first and last among them): 1 and *map set, 0 when
 * a sampled page is not (nothing mapped), or -errno. */
int filemap_cached(int fd, uint64_t size, const void **map, struct uwerr *e);
void filemap_unmap(const void *map, uint64_t size);   /* NULL is fine */

/* n bytes of fd at off into buf; a short file is -EIO naming path. */
int filemap_pread(int fd, const char *path, void *buf, size_t n, uint64_t off,
		  struct uwerr *e);

#endif
