/* read: how fast the daemon's reader (format/uring_read.c) reads files on
 * its own, without encoding, beside what cat reads: every file in 64 MiB
 * reads, four in flight per ring and one ring per file on threads of their
 * own (as the loader reads shards), buffers reused. Prints GB/s.
 *
 *   bench/uw-bench-read [--mode auto|direct|buffered] FILE...
 */
#include "config.h"

#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "format/uring_read.h"

#define PIECE (64u << 20)
#define INFLIGHT 4

struct one {
	const char *path;
	enum ur_mode mode;
	uint64_t bytes;
	int direct, uring, rc;
	struct uwerr e;
};

static void *read_file(void *arg)
{
	struct one *o = arg;
	struct ur_ring *r = NULL;
	struct ur_file *f = NULL;
	struct ur_read q[INFLIGHT] = {0};
	struct stat sb;
	int fd = open(o->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb)) {
		o->rc = uwerr_set(&o->e, errno, "%s: %s", o->path, strerror(errno));
		goto out;
	}
	if ((o->rc = ur_ring_new(0, &r, &o->e)) ||
	    (o->rc = ur_file_open(fd, (uint64_t)sb.st_size, o->path, o->mode, &f, &o->e)))
		goto out;
	o->direct = ur_file_direct(f);
	o->uring = ur_ring_uring(r);
	uint64_t off = 0, size = (uint64_t)sb.st_size;
	for (int i = 0; i < INFLIGHT && off < size; i++, off += PIECE) {
		q[i] = (struct ur_read){.f = f, .off = off, .len = size - off < PIECE ? size - off : PIECE};
		if ((o->rc = ur_submit(r, &q[i], &o->e)))
			goto out;
	}
	for (struct ur_read *d; (d = ur_wait(r)); ) {
		if (d->rc) {
			o->rc = d->rc;
			o->e = d->e;
			ur_cancel(r);
			continue;
		}
		o->bytes += d->len;
		if (off < size && !o->rc) {
			d->off = off;
			d->len = size - off < PIECE ? size - off : PIECE;
			off += d->len;
			if ((o->rc = ur_submit(r, d, &o->e)))
				ur_cancel(r);
		}
	}
out:
	ur_ring_free(r);
	for (int i = 0; i < INFLIGHT; i++)
		free(q[i].buf);
	ur_file_close(f);
	if (fd >= 0)
		close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"mode", required_argument, NULL, 'm'}, {0}};
	enum ur_mode mode = UR_AUTO;
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'm' && !strcmp(optarg, "direct"))
			mode = UR_DIRECT;
		else if (o == 'm' && !strcmp(optarg, "buffered"))
			mode = UR_BUFFERED;
		else if (o != 'm' || strcmp(optarg, "auto"))
			optind = argc + 1;
	}
	int n = argc - optind;
	if (n < 1) {
		fprintf(stderr, "usage: uw-bench-read [--mode auto|direct|buffered] FILE...\n");
		return 2;
	}
	struct one *f = calloc((size_t)n, sizeof(*f));
	pthread_t *th = calloc((size_t)n, sizeof(*th));
	if (!f || !th)
		return 1;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++) {
		f[i] = (struct one){.path = argv[optind + i], .mode = mode};
		if (pthread_create(&th[i], NULL, read_file, &f[i]))
			return 1;
	}
	uint64_t bytes = 0;
	int rc = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		bytes += f[i].bytes;
		if (f[i].rc) {
			fprintf(stderr, "uw-bench-read: %s\n", f[i].e.msg);
			rc = 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
	printf("uring reader: %d files, %.3f GB in %.3f s: %.2f GB/s (%s, %s)\n", n,
	       (double)bytes / 1e9, s, (double)bytes / 1e9 / s,
	       f[0].direct ? "O_DIRECT" : "buffered", f[0].uring ? "io_uring" : "pread");
	free(f);
	free(th);
	return rc;
}
