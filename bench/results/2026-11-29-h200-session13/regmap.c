/* experiment: H2D straight from page-cache pages (mmap + cudaHostRegister)
 * against pread into pinned staging + H2D, T threads, from the page cache. */

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cuda_runtime.h>

#define CK(x) do { cudaError_t e_ = (x); if (e_) { fprintf(stderr, "%s: %s (line %d)\n", #x, cudaGetErrorString(e_), __LINE__); exit(1); } } while (0)

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static int fd, mode, nthr, flags;
static size_t fsize, piece;
static const char *map;
static char *dev;
static double treg[64], tcpy[64];

static void *worker(void *arg)
{
	int id = (int)(long)arg;
	cudaStream_t s;
	CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	char *stage[2] = {0};
	if (mode == 1) {
		CK(cudaHostAlloc((void **)&stage[0], piece, 0));
		CK(cudaHostAlloc((void **)&stage[1], piece, 0));
	}
	cudaEvent_t ev[2];
	CK(cudaEventCreateWithFlags(&ev[0], cudaEventDisableTiming));
	CK(cudaEventCreateWithFlags(&ev[1], cudaEventDisableTiming));
	int k = 0;
	const char *prev = NULL; size_t prevn = 0;
	for (size_t off = (size_t)id * piece; off < fsize; off += (size_t)nthr * piece, k ^= 1) {
		size_t n = fsize - off < piece ? fsize - off : piece;
		if (mode == 0) {
			double t0 = now();
			CK(cudaHostRegister((void *)(map + off), n, flags));
			treg[id] += now() - t0;
			CK(cudaMemcpyAsync(dev + off, map + off, n, cudaMemcpyHostToDevice, s));
			CK(cudaEventRecord(ev[k], s));
			if (prev) {
				CK(cudaEventSynchronize(ev[k ^ 1]));
				CK(cudaHostUnregister((void *)prev));
			}
			prev = map + off; prevn = n;
		} else {
			CK(cudaEventSynchronize(ev[k]));   /* stage k free */
			double t0 = now();
			size_t got = 0;
			while (got < n) {
				ssize_t r = pread(fd, stage[k] + got, n - got, off + got);
				if (r <= 0) { perror("pread"); exit(1); }
				got += r;
			}
			treg[id] += now() - t0;
			CK(cudaMemcpyAsync(dev + off, stage[k], n, cudaMemcpyHostToDevice, s));
			CK(cudaEventRecord(ev[k], s));
		}
	}
	CK(cudaStreamSynchronize(s));
	if (mode == 0 && prev)
		CK(cudaHostUnregister((void *)prev));
	(void)prevn;
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 5) { fprintf(stderr, "regmap FILE mode(0 reg,1 pread) threads pieceMB [private]\n"); return 2; }
	mode = atoi(argv[2]); nthr = atoi(argv[3]); piece = (size_t)atoi(argv[4]) << 20;
	int priv = argc > 5 && atoi(argv[5]);
	fd = open(argv[1], O_RDONLY);
	struct stat st; fstat(fd, &st); fsize = st.st_size;
	CK(cudaSetDevice(0));
	CK(cudaFree(0));
	CK(cudaMalloc((void **)&dev, fsize));
	flags = cudaHostRegisterReadOnly;
	if (mode == 0) {
		map = (const char *)mmap(NULL, fsize, PROT_READ, priv ? MAP_PRIVATE : MAP_SHARED, fd, 0);
		if (map == MAP_FAILED) { perror("mmap"); return 1; }
	}
	pthread_t th[64];
	double t0 = now();
	for (int i = 0; i < nthr; i++) pthread_create(&th[i], NULL, worker, (void *)(long)i);
	for (int i = 0; i < nthr; i++) pthread_join(th[i], NULL);
	CK(cudaDeviceSynchronize());
	double t = now() - t0, reg = 0;
	for (int i = 0; i < nthr; i++) reg += treg[i];
	/* check: first and last bytes of each piece against the file */
	unsigned char a, b;
	for (size_t off = 0; off < fsize; off += piece) {
		CK(cudaMemcpy(&a, dev + off, 1, cudaMemcpyDeviceToHost));
		pread(fd, &b, 1, off);
		if (a != b) { fprintf(stderr, "mismatch at %zu\n", off); return 1; }
	}
	printf("%s threads %d piece %zu MiB%s: %.3f s, %.2f GB/s; %s per thread %.3f s\n",
	       mode ? "pread+pinned" : "mmap+register", nthr, piece >> 20, priv ? " private" : "",
	       t, fsize / t / 1e9, mode ? "pread" : "register", reg / nthr);
	return 0;
}
