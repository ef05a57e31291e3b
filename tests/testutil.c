/* testutil: implementation of testutil.h. */
#include "config.h"

#include "tests/testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *tu_srcdir(void)
{
	const char *d = getenv("UW_TOP_SRCDIR");
	return d ? d : ".";
}

const char *tu_builddir(void)
{
	const char *d = getenv("UW_TOP_BUILDDIR");
	return d ? d : ".";
}

char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *path;
	if (asprintf(&path, "%s/uwtest.XXXXXX", base ? base : "/tmp") < 0)
		return NULL;
	if (!mkdtemp(path)) {
		free(path);
		return NULL;
	}
	return path;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

void tu_rmtree(const char *dir)
{
	if (dir)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t tu_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t tu_seed(void)
{
	const char *env = getenv("UW_TEST_SEED");
	uint64_t seed;
	if (env) {
		seed = strtoull(env, NULL, 0);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
	}
	fprintf(stderr, "test seed: UW_TEST_SEED=%llu\n", (unsigned long long)seed);
	return seed;
}

int tu_write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t n = len ? fwrite(data, 1, len, f) : 0;
	return (fclose(f) == 0 && n == len) ? 0 : -1;
}

void *tu_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t cap = 0, n = 0;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	fclose(f);
	*len = n;
	return buf;
}

int tu_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;  /* the directory's own fd */
}

void tu_proto_hdr(uint8_t *b, uint32_t magic, uint16_t version, uint16_t op,
		  uint32_t len, uint16_t nfds, uint16_t reserved)
{
	for (int i = 0; i < 4; i++) {
		b[i] = (uint8_t)(magic >> 8 * i);
		b[8 + i] = (uint8_t)(len >> 8 * i);
	}
	b[4] = (uint8_t)version, b[5] = (uint8_t)(version >> 8);
	b[6] = (uint8_t)op, b[7] = (uint8_t)(op >> 8);
	b[12] = (uint8_t)nfds, b[13] = (uint8_t)(nfds >> 8);
	b[14] = (uint8_t)reserved, b[15] = (uint8_t)(reserved >> 8);
}
