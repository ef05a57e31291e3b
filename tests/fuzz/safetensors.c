/* safetensors: a whole file of any bytes, read both ways the library reads
 * one: st_parse over the bytes in memory and st_open over the same bytes as
 * a file (memfd). Both must agree, and an accepted file's tensors must tile
 * its data exactly, each readable where the header says. */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "format/safetensors.h"
#include "tests/fuzz/fuzz.h"

static void check_tensors(const struct st_file *f, const uint8_t *data, size_t size)
{
	FUZZ_CHECK(f->data_start == 8 + f->header_len && f->data_start <= size);
	FUZZ_CHECK(f->header[f->header_len] == '\0');
	uint64_t at = 0;
	for (size_t i = 0; i < f->ntensors; i++) {
		const struct st_tensor *t = &f->tensors[i];
		FUZZ_CHECK(t->begin == at && t->begin <= t->end);
		FUZZ_CHECK(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
		FUZZ_CHECK(strlen(t->name) >= 1 && strlen(t->name) <= ST_MAX_NAME);
		at = t->end;
		uint64_t n = st_tensor_bytes(t);
		if (f->fd < 0 || n > FUZZ_MAX_ALLOC)
			continue;
		struct uwerr e = {0};
		void *buf = malloc(n ? n : 1);
		FUZZ_CHECK(buf);
		FUZZ_CHECK(st_read_tensor(f, t, buf, &e) == 0);
		FUZZ_CHECK(memcmp(buf, data + f->data_start + t->begin, n) == 0);
		free(buf);
	}
	FUZZ_CHECK(at == size - f->data_start);
}

int fuzz_safetensors(const uint8_t *data, size_t size)
{
	struct st_file *mem = NULL, *file = NULL;
	struct uwerr em = {0}, ef = {0};
	char path[64];
	int rm = st_parse(data, size, size, &mem, &em);
	int fd = fuzz_memfd(data, size, path);
	int rf = st_open(path, &file, &ef);
	close(fd);
	if (rm < 0 || rf < 0) {
		/* One reader may not accept what the other refuses. */
		FUZZ_CHECK(rm < 0 && rf < 0 && !mem && !file);
		FUZZ_CHECK(em.msg[0] && ef.msg[0]);
		return 0;
	}
	FUZZ_CHECK(mem->ntensors == file->ntensors && mem->nmeta == file->nmeta);
	check_tensors(mem, data, size);
	check_tensors(file, data, size);
	for (size_t i = 0; i < mem->nmeta; i++)
		FUZZ_CHECK(mem->meta[i].key && mem->meta[i].value);
	st_close(mem);
	st_close(file);
	return 0;
}

FUZZ_ENTRY(safetensors)
