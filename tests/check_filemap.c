/* check_filemap: the cuda loader's mapped path on the CPU side (the GPU
 * side is check_gpu_integration's loads, which take it from the page
 * cache): a file wholly in the page cache is mapped and the mapping holds
 * its bytes; an empty one is not; filemap_pread reads exact ranges and
 * reports a file that ends inside the range (truncated under a load) as
 * -EIO naming the file, not a short buffer. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "daemon/filemap.h"

#include "tests/testutil.h"

#define LEN (3u << 20 | 123)    /* several pages and a partial one */

static char *dir, path[512];
static unsigned char *data;

static void setup(void)
{
	uint64_t st = tu_seed();
	dir = tu_tmpdir();
	snprintf(path, sizeof(path), "%s/f.bin", dir);
	data = malloc(LEN);
	ck_assert_ptr_nonnull(data);
	for (size_t i = 0; i < LEN; i++)
		data[i] = (unsigned char)tu_rand(&st);
	ck_assert_int_eq(tu_write_file(path, data, LEN), 0);
}

static void teardown(void)
{
	tu_rmtree(dir);
	free(dir);
	free(data);
}

START_TEST(t_cached_file_is_mapped)
{
	int fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	struct uwerr e = {0};
	const void *m = NULL;
	/* just written: every page is in the page cache */
	ck_assert_int_eq(filemap_cached(fd, LEN, &m, &e), 1);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(memcmp(m, data, LEN), 0);
	filemap_unmap(m, LEN);
	close(fd);
}
END_TEST

START_TEST(t_empty_file_is_not_mapped)
{
	char p2[600];
	snprintf(p2, sizeof(p2), "%s/empty", dir);
	ck_assert_int_eq(tu_write_file(p2, "", 0), 0);
	int fd = open(p2, O_RDONLY);
	struct uwerr e = {0};
	const void *m = (const void *)1;
	ck_assert_int_eq(filemap_cached(fd, 0, &m, &e), 0);
	ck_assert_ptr_null(m);
	close(fd);
}
END_TEST

START_TEST(t_pread_ranges_and_truncation)
{
	int fd = open(path, O_RDONLY);
	struct uwerr e = {0};
	unsigned char *buf = malloc(LEN);
	ck_assert_int_eq(filemap_pread(fd, path, buf, LEN, 0, &e), 0);
	ck_assert_int_eq(memcmp(buf, data, LEN), 0);
	ck_assert_int_eq(filemap_pread(fd, path, buf, 4097, LEN - 4097, &e), 0);
	ck_assert_int_eq(memcmp(buf, data + LEN - 4097, 4097), 0);
	/* the file ends 100 bytes into the range */
	ck_assert_int_eq(filemap_pread(fd, path, buf, 200, LEN - 100, &e), -EIO);
	ck_assert_msg(strstr(e.msg, path) && strstr(e.msg, "truncated"), "%s", e.msg);
	/* shortened under an open descriptor, as a load would see it */
	ck_assert_int_eq(truncate(path, 1000), 0);
	uwerr_clear(&e);
	ck_assert_int_eq(filemap_pread(fd, path, buf, 4096, 0, &e), -EIO);
	ck_assert_msg(strstr(e.msg, "ends at 1000"), "%s", e.msg);
	free(buf);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("filemap");
	TCase *tc = tu_tcase(s, "filemap", 30);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, t_cached_file_is_mapped);
	tcase_add_test(tc, t_empty_file_is_not_mapped);
	tcase_add_test(tc, t_pread_ranges_and_truncation);
	return tu_run(s);
}
