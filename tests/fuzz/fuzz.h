/* fuzz: what the fuzz harnesses share. Each harness is one entry function,
 * fuzz_NAME(data, size), that feeds untrusted bytes to one parser and checks
 * what it gives back. libFuzzer drives it (make fuzz, built with
 * --enable-fuzz); tests/check_fuzz_corpus replays the seed corpora and the
 * saved crash reproducers of tests/fuzz/NAME/ through the same functions in
 * plain make check. */
#ifndef UW_TESTS_FUZZ_H
#define UW_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A property the parser broke: abort, so libFuzzer saves the input and the
 * replay suite fails. */
#define FUZZ_CHECK(cond)                                                      \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: fuzz check failed: %s\n",     \
				__FILE__, __LINE__, #cond);                   \
			abort();                                              \
		}                                                             \
	} while (0)

/* The entry a libFuzzer binary calls: one per program, named by the harness
 * at its end. Empty in the replay suite, which links every harness. */
#ifdef UW_LIBFUZZER
#define FUZZ_ENTRY(name)                                                      \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);         \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)          \
	{                                                                     \
		return fuzz_##name(data, size);                               \
	}
#else
#define FUZZ_ENTRY(name)
#endif

/* Decoded bytes a harness allocates at most: bigger claims are skipped, so
 * a few input bytes cannot ask for gigabytes (zstd frames, huge shapes). */
#define FUZZ_MAX_ALLOC (4u << 20)

/* A file holding data[0..size), as an fd (memfd), for readers that take a
 * path, whose name is written to path ("/proc/self/fd/N"). Aborts when it
 * cannot. */
int fuzz_memfd(const uint8_t *data, size_t size, char path[64]);

/* A fresh directory for one input's files, in /dev/shm where there is one
 * (a disk-backed /tmp makes a harness ten times slower). Aborts when it
 * cannot. The harness removes it. */
void fuzz_tmpdir(char dir[64], const char *name);

int fuzz_json(const uint8_t *data, size_t size);
int fuzz_safetensors(const uint8_t *data, size_t size);
int fuzz_index(const uint8_t *data, size_t size);
int fuzz_bundle(const uint8_t *data, size_t size);
int fuzz_restcodec(const uint8_t *data, size_t size);
int fuzz_resident(const uint8_t *data, size_t size);
int fuzz_proto(const uint8_t *data, size_t size);
int fuzz_tune(const uint8_t *data, size_t size);

#endif
