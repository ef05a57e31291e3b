/* testutil: what the Check suites share: temporary dirs, fixture paths,
 * seeded random data, whole-file I/O, open-fd counting (a leak fails) and
 * the suite runner. */
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

/* A 16-byte proto header written byte by byte, as proto/PROTOCOL.md lays it
 * out, apart from the library's encoder: for hand-made (malformed) frames. */
void tu_proto_hdr(uint8_t *b, uint32_t magic, uint16_t version, uint16_t op,
		  uint32_t len, uint16_t nfds, uint16_t reserved);

/* Number of open fds of this process (a leak check: compare before/after). */
int tu_count_fds(void);

/* Check's types (check.h), declared here so the header stands without it. */
typedef struct Suite Suite;
typedef struct TCase TCase;
/* A test case named name, added to s; timeout in seconds, 0 keeps Check's. */
TCase *tu_tcase(Suite *s, const char *name, double timeout);
/* Run every test of s (forking, CK_NORMAL output); EXIT_SUCCESS when all pass. */
int tu_run(Suite *s);

#endif
