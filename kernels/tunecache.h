/* tunecache: the matmul autotuner's choices, on disk and in memory.
 *
 * unweightd's tuner times uwk_matmul's pipelines for each weight shape at
 * each batch bucket on one device model and keeps the fastest in
 * DIR/matmul.tune, a small text file (docs/FORMAT.md, "Tune cache"):
 *
 *   unweight-tune 1
 *   # DEVICE CC SMS LIB ROWSxCOLS BUCKET CHOICE TUNED_US DEFAULT_US
 *   NVIDIA_H200 sm_90 132 0.1.0+uwk1 14336x4096 b1 fused:4x2/1/2 35.90 36.10
 *
 * A line is valid for the device whose key (model name, compute capability,
 * multiprocessors, library and kernel generation) it names, and only for
 * it: a card, driver-visible slice or library of another kind ignores it.
 * uwk contexts read the file once (uwk_ctx_load_tune) into a tune_table,
 * which AUTO consults per call without I/O. */
#ifndef UW_KERNELS_TUNECACHE_H
#define UW_KERNELS_TUNECACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define TUNE_FORMAT_VERSION 1
#define TUNE_FILE_NAME "matmul.tune"
#define TUNE_DIR_DEFAULT "/var/cache/unweight"
/* buckets 1, 2, 4, ... 1024: the mma.sync kernel's batches (to 64), then
 * where the warpgroup kernel and decode + cuBLAS cross over (per device) */
#define TUNE_MAX_BUCKET 1024
#define TUNE_MAX_DEVICE 64          /* device token, with its NUL */
#define TUNE_MAX_LIB 32             /* library token, with its NUL */
#define TUNE_MAX_FILE (4u << 20)    /* a cache larger than this is refused */

/* What a choice is valid for. */
struct tune_key {
	char device[TUNE_MAX_DEVICE]; /* tune_device_token of the model name */
	unsigned cc;                  /* compute capability, major * 10 + minor */
	unsigned sms;                 /* multiprocessors */
	char lib[TUNE_MAX_LIB];       /* "0.1.0+uwk1": package and kernel generation */
};

/* fused: the mma.sync kernel; gemm: decode + cuBLAS; wg: the warpgroup
 * (wgmma) kernel, with its own shape and split. */
enum tune_pipe { TUNE_PIPE_FUSED = 1, TUNE_PIPE_GEMM = 2, TUNE_PIPE_WG = 3 };

/* A pipeline and its parameters (uwk_cfg for the fused one). */
struct tune_choice {
	int pipe;                     /* enum tune_pipe */
	int wm, wk, ks, pf;           /* fused only */
};

struct tune_entry {
	struct tune_key key;
	uint32_t rows, cols;
	unsigned bucket;              /* the batches (bucket / 2, bucket] */
	struct tune_choice c;
	double us, default_us;        /* the chosen one's time and AUTO's default's */
};

/* Entries in file order; a put of an entry whose key, shape and bucket are
 * there already replaces it in place. */
struct tune_set {
	struct tune_entry *e;
	size_t n, cap;
};

/* The bucket of a batch: the power of two at or above it, 0 above
 * TUNE_MAX_BUCKET (and for batch 0). */
unsigned tune_bucket(size_t batch);

/* A device model name as the file writes it: bytes outside
 * [A-Za-z0-9.-] become '_', at most TUNE_MAX_DEVICE - 1 of them
 * ("unknown" for ""). */
void tune_device_token(const char *name, char out[TUNE_MAX_DEVICE]);

int tune_key_eq(const struct tune_key *a, const struct tune_key *b);

/* The directory of the cache: dir when given and not empty; else
 * $UW_TUNE_DIR, where NULL means set and empty (no cache at all); else
 * TUNE_DIR_DEFAULT. */
const char *tune_dir(const char *dir);

/* Parse a whole file (what names it in messages). A file of another format
 * version is ignored: 0, nothing added, *version set (may be NULL). A line
 * that does not parse rejects the file: -EINVAL naming it, s unchanged. */
int tune_parse(const char *text, size_t len, const char *what, struct tune_set *s,
	       unsigned *version, struct uwerr *e);

int tune_set_put(struct tune_set *s, const struct tune_entry *en, struct uwerr *e);
/* The entry of key, shape and bucket, or NULL. */
const struct tune_entry *tune_set_find(const struct tune_set *s, const struct tune_key *k,
				       uint32_t rows, uint32_t cols, unsigned bucket);
void tune_set_free(struct tune_set *s);

/* A choice as the file writes it: "gemm", "wg" or "fused:WMxWK/KS/PF". */
void tune_choice_name(const struct tune_choice *c, char *buf, size_t n);

/* The file's text (header, field line, entries in order); malloc'd, NULL
 * when out of memory. */
char *tune_format(const struct tune_set *s);

/* DIR/matmul.tune into s: a missing file is an empty cache (0). */
int tune_read(const char *dir, struct tune_set *s, unsigned *version, struct uwerr *e);

/* Merge add into DIR/matmul.tune under an exclusive lock on DIR (read what
 * is there, put each entry of add, write), replacing the file atomically
 * (a temporary file in DIR, fsync, rename, fsync of DIR): a reader sees the
 * old file or the new one, never a part. The file is mode 0644 whatever the
 * umask: clients of other users read it. An existing file that does not
 * parse, or of another format version, is replaced: note (may be NULL)
 * then says why, with note->code set. */
int tune_merge_write(const char *dir, const struct tune_set *add, struct uwerr *note,
		     struct uwerr *e);

/* A lookup table of one key's entries, for AUTO: keep decides which
 * choices the kernels can run at their bucket's batches (NULL: all). */
struct tune_table;
int tune_table_build(const struct tune_set *s, const struct tune_key *k,
		     int (*keep)(const struct tune_entry *en), struct tune_table **out,
		     struct uwerr *e);
/* The choice for a shape at a batch, or NULL (no entry: the defaults). */
const struct tune_choice *tune_table_find(const struct tune_table *t, uint64_t rows,
					  uint64_t cols, size_t batch);
size_t tune_table_size(const struct tune_table *t);
void tune_table_free(struct tune_table *t);

#endif
