/* testutil: what the Check suites share: temporary dirs, fixture paths,
 * seeded random data, whole-file I/O and open-fd counting (a leak fails). */
#ifndef UW_TESTS_TESTUTIL_H
#define UW_TESTS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* The source tree (for data/ fixtures) and the build tree (for programs). */
const char *tu_srcdir(void);
const char *tu_builddir(void);

/* A fresh directory under $TMPDIR (or /tmp); removed with tu_rmtree. */
char *tu_tmpdir(void);
void tu_rmtree(const char *dir);

/* splitmix64: deterministic per seed; the seed is printed by tu_seed(). */
uint64_t tu_rand(uint64_t *state);
/* A seed from $UW_TEST_SEED, else from the clock; printed to stderr. */
uint64_t tu_seed(void);

int tu_write_file(const char *path, const void *data, size_t len);
/* malloc'd contents, or NULL. */
void *tu_read_file(const char *path, size_t *len);

/* Number of open fds of this process (a leak check: compare before/after). */
int tu_count_fds(void);

#endif
