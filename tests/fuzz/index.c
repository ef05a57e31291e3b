/* index: a sharded checkpoint's model.safetensors.index.json of any bytes,
 * beside two fixed shards (a.safetensors: x, y; b.safetensors: z), opened
 * with st_checkpoint_open as the daemon opens a load path. An accepted
 * checkpoint holds exactly the shards' tensors, each once. */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "format/safetensors.h"
#include "tests/fuzz/fuzz.h"
#include "tests/testutil.h"

static const char shard_a[] =
	"{\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
	"\"y\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}";
static const char shard_b[] = "{\"z\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}";

/* An 8-byte length, the header, then data bytes of zeros. */
static void write_shard(const char *dir, const char *name, const char *header, size_t data)
{
	char path[256];
	uint8_t buf[256] = {0};
	size_t n = strlen(header);
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
	memcpy(buf + 8, header, n);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FUZZ_CHECK(tu_write_file(path, buf, 8 + n + data) == 0);
}

int fuzz_index(const uint8_t *data, size_t size)
{
	char dir[64], path[128];
	fuzz_tmpdir(dir, "index");
	write_shard(dir, "a.safetensors", shard_a, 3);
	write_shard(dir, "b.safetensors", shard_b, 4);
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	FUZZ_CHECK(tu_write_file(path, data, size) == 0);

	const char *paths[] = { path };
	struct st_checkpoint *c = NULL;
	struct uwerr e = {0};
	if (st_checkpoint_open(paths, 1, &c, &e) == 0) {
		unsigned seen = 0;      /* bit k: tensor "x" + k */
		for (size_t i = 0; i < c->nfiles; i++)
			for (size_t k = 0; k < c->files[i]->ntensors; k++) {
				const char *name = c->files[i]->tensors[k].name;
				FUZZ_CHECK(strlen(name) == 1 && name[0] >= 'x' && name[0] <= 'z');
				unsigned bit = 1u << (name[0] - 'x');
				FUZZ_CHECK(!(seen & bit));
				seen |= bit;
			}
		FUZZ_CHECK(seen == 3 || seen == 4 || seen == 7);
		FUZZ_CHECK(c->index_json && c->index_len <= size);
		st_checkpoint_close(c);
	} else {
		FUZZ_CHECK(!c && e.msg[0]);
	}
	const char *names[] = { "a.safetensors", "b.safetensors", "model.safetensors.index.json" };
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		FUZZ_CHECK(unlink(path) == 0);
	}
	FUZZ_CHECK(rmdir(dir) == 0);
	return 0;
}

FUZZ_ENTRY(index)
