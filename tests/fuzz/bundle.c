/* bundle: a whole .uwb file of any bytes, through bundle_parse (memory) and
 * bundle_open (the same bytes as a file): both must agree, and every tensor
 * of an accepted bundle must read the same both ways. Then unpack, as
 * unweightctl does, which parses the stored shard headers: the merged file
 * must open and hold the tensors' bytes. The harness rewrites the header
 * and directory CRCs (and, after parsing, the payload and raw CRCs) to match
 * the bytes, so mutations reach the parsers and decoders behind the
 * checksums rather than dying at them. */
#include "config.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/le.h"
#include "format/bundle.h"
#include "format/pack.h"
#include "format/restcodec.h"
#include "tests/fuzz/fuzz.h"

/* Header fields (docs/FORMAT.md, "Header") the fix-up touches. */
#define H_DIR_OFFSET 24
#define H_DIR_LENGTH 32
#define H_DIR_CRC 40
#define H_CRC 60

static void fix_crcs(uint8_t *b, size_t size)
{
	if (size < BUNDLE_HEADER_SIZE || memcmp(b, BUNDLE_MAGIC, BUNDLE_MAGIC_LEN) != 0)
		return;
	uint64_t off = le64_get(b + H_DIR_OFFSET), len = le64_get(b + H_DIR_LENGTH);
	if (off <= size && len <= size - off)
		le32_put(b + H_DIR_CRC, crc32c(0, b + off, len));
	le32_put(b + H_CRC, crc32c(0, b, H_CRC));
}

/* Read tensor i of both bundles, its payload CRC made right first, and its
 * raw CRC too when the payload decodes. */
static void read_both(struct bundle *mem, struct bundle *file, size_t i)
{
	struct bundle_tensor *tm = &mem->tensors[i], *tf = &file->tensors[i];
	tm->payload_crc = tf->payload_crc = crc32c(0, mem->mem + tm->offset, tm->length);
	size_t n = tm->raw_bytes ? tm->raw_bytes : 1;
	uint8_t *a = malloc(n), *b = malloc(n);
	struct uwerr ea = {0}, eb = {0};
	FUZZ_CHECK(a && b);
	if (rest_decode(tm->enc, tm->dtype, mem->mem + tm->offset, tm->length, a, tm->raw_bytes,
			1, &ea) == 0)
		tm->raw_crc = tf->raw_crc = crc32c(0, a, tm->raw_bytes);
	int ra = bundle_read_tensor(mem, i, a, 1, &ea);
	int rb = bundle_read_tensor(file, i, b, 1, &eb);
	FUZZ_CHECK(ra == rb);
	if (ra == 0)
		FUZZ_CHECK(memcmp(a, b, tm->raw_bytes) == 0);
	else
		FUZZ_CHECK(ea.msg[0] && strcmp(ea.msg, eb.msg) == 0);
	free(a);
	free(b);
}

/* Remove what an unpack left at path: a file, or a directory of files. */
static void remove_out(const char *path)
{
	DIR *d = opendir(path);
	if (!d) {
		unlink(path);
		return;
	}
	for (struct dirent *de; (de = readdir(d));)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			FUZZ_CHECK(unlinkat(dirfd(d), de->d_name, 0) == 0);
	closedir(d);
	FUZZ_CHECK(rmdir(path) == 0);
}

/* Unpack both ways into a fresh directory; the merged file must hold every
 * tensor's decoded bytes. */
static void unpack(const struct bundle *b)
{
	char dir[64], one[128], merged[128];
	fuzz_tmpdir(dir, "bundle");
	snprintf(one, sizeof(one), "%s/out", dir);
	snprintf(merged, sizeof(merged), "%s/merged", dir);
	struct uwerr e = {0};
	bundle_unpack(b, one, 0, 1, 0, &e);
	remove_out(one);
	if (bundle_unpack(b, merged, UNPACK_MERGE, 1, 0, &e) < 0) {
		FUZZ_CHECK(e.msg[0]);
		remove_out(merged);
		FUZZ_CHECK(rmdir(dir) == 0);
		return;
	}
	struct st_file *f;
	FUZZ_CHECK(st_open(merged, &f, &e) == 0 && f->ntensors == b->ntensors);
	for (size_t i = 0; i < f->ntensors; i++) {
		const struct st_tensor *t = &f->tensors[i];
		uint8_t *got = malloc(st_tensor_bytes(t) + 1), *want = malloc(st_tensor_bytes(t) + 1);
		size_t k = 0;
		while (strcmp(b->tensors[k].name, t->name))
			k++;        /* the names are the bundle's, each once */
		FUZZ_CHECK(got && want && b->tensors[k].raw_bytes == st_tensor_bytes(t));
		FUZZ_CHECK(st_read_tensor(f, t, got, &e) == 0);
		FUZZ_CHECK(bundle_read_tensor(b, k, want, 1, &e) == 0);
		FUZZ_CHECK(memcmp(got, want, st_tensor_bytes(t)) == 0);
		free(want);
		free(got);
	}
	st_close(f);
	remove_out(merged);
	FUZZ_CHECK(rmdir(dir) == 0);
}

int fuzz_bundle(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);
	struct bundle *mem = NULL, *file = NULL;
	struct uwerr em = {0}, ef = {0};
	char path[64];
	FUZZ_CHECK(buf);
	memcpy(buf, data, size);
	fix_crcs(buf, size);
	int rm = bundle_parse(buf, size, &mem, &em);
	int fd = fuzz_memfd(buf, size, path);
	int rf = bundle_open(path, &file, &ef);
	close(fd);
	FUZZ_CHECK(rm == rf);
	if (rm < 0) {
		FUZZ_CHECK(!mem && !file && em.msg[0] && strcmp(em.msg, ef.msg) == 0);
		free(buf);
		return 0;
	}
	FUZZ_CHECK(mem->ntensors == file->ntensors && mem->nshards == file->nshards);
	size_t first = 0;
	for (size_t s = 0; s < mem->nshards; s++) {
		FUZZ_CHECK(mem->shards[s].first == first);
		FUZZ_CHECK(strcmp(mem->shards[s].name, file->shards[s].name) == 0);
		first += mem->shards[s].count;
	}
	FUZZ_CHECK(first == mem->ntensors);
	uint64_t total = 0;
	for (size_t i = 0; i < mem->ntensors; i++) {
		const struct bundle_tensor *t = &mem->tensors[i];
		FUZZ_CHECK(t->offset >= BUNDLE_HEADER_SIZE && t->offset + t->length <= size);
		FUZZ_CHECK(strcmp(t->name, file->tensors[i].name) == 0);
		total += t->raw_bytes < FUZZ_MAX_ALLOC ? t->raw_bytes : FUZZ_MAX_ALLOC;
	}
	/* A few input bytes can claim gigabytes of zeros: leave those. */
	if (total < FUZZ_MAX_ALLOC) {
		for (size_t i = 0; i < mem->ntensors; i++)
			read_both(mem, file, i);
		unpack(mem);
	}
	bundle_close(mem);
	bundle_close(file);
	free(buf);
	return 0;
}

FUZZ_ENTRY(bundle)
