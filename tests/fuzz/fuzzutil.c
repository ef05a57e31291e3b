/* fuzzutil: the harnesses' shared helpers (fuzz.h). */
#include "config.h"  /* first: _GNU_SOURCE, for memfd_create */

#include "tests/fuzz/fuzz.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/io.h"

int fuzz_memfd(const uint8_t *data, size_t size, char path[64])
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(io_pwrite_full(fd, data, size, 0, NULL) == 0);
	snprintf(path, 64, "/proc/self/fd/%d", fd);
	return fd;
}

void fuzz_tmpdir(char dir[64], const char *name)
{
	struct stat st;
	const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
			   access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, 64, "%s/uw-fuzz-%s-XXXXXX", base, name);
	FUZZ_CHECK(mkdtemp(dir));
}
