/* check_fuzz_corpus: every fuzz harness (tests/fuzz/) over its seed corpus
 * and saved crash reproducers (tests/fuzz/NAME/), built as a plain program,
 * so a crash the fuzzers found and we fixed stays fixed in make check
 * (and under ASan/UBSan in the sanitizer build) without clang. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "tests/testutil.h"

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_hidden(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* Each file of tests/fuzz/name/, from an exact-size heap copy (so ASan sees
 * any read past its end), through fn; fds must not leak. */
static void replay(const char *name, int (*fn)(const uint8_t *, size_t))
{
	char dir[4096];
	struct dirent **ent;
	snprintf(dir, sizeof(dir), "%s/tests/fuzz/%s", tu_srcdir(), name);
	int n = scandir(dir, &ent, not_hidden, by_name);
	ck_assert_msg(n > 0, "%s: no corpus (%s)", dir, n < 0 ? "cannot read it" : "empty");
	int fds = tu_count_fds();
	for (int i = 0; i < n; i++) {
		char path[8192];
		size_t len;
		snprintf(path, sizeof(path), "%s/%s", dir, ent[i]->d_name);
		uint8_t *data = tu_read_file(path, &len);
		ck_assert_msg(data, "%s: cannot read", path);
		uint8_t *exact = malloc(len ? len : 1);
		ck_assert_ptr_nonnull(exact);
		memcpy(exact, data, len);
		free(data);
		fprintf(stderr, "%s: %s (%zu bytes)\n", name, ent[i]->d_name, len);
		ck_assert_int_eq(fn(exact, len), 0);
		free(exact);
		free(ent[i]);
	}
	free(ent);
	ck_assert_int_eq(tu_count_fds(), fds);
}

START_TEST(json) { replay("json", fuzz_json); }
END_TEST
START_TEST(safetensors) { replay("safetensors", fuzz_safetensors); }
END_TEST
START_TEST(checkpoint_index) { replay("index", fuzz_index); }
END_TEST
START_TEST(bundle) { replay("bundle", fuzz_bundle); }
END_TEST
START_TEST(restcodec) { replay("restcodec", fuzz_restcodec); }
END_TEST
START_TEST(resident) { replay("resident", fuzz_resident); }
END_TEST
START_TEST(proto) { replay("proto", fuzz_proto); }
END_TEST
START_TEST(tune) { replay("tune", fuzz_tune); }
END_TEST

int main(void)
{
	Suite *s = suite_create("fuzz_corpus");
	tcase_add_test(tu_tcase(s, "json", 0), json);
	tcase_add_test(tu_tcase(s, "safetensors", 0), safetensors);
	tcase_add_test(tu_tcase(s, "index", 0), checkpoint_index);
	tcase_add_test(tu_tcase(s, "bundle", 0), bundle);
	tcase_add_test(tu_tcase(s, "restcodec", 0), restcodec);
	tcase_add_test(tu_tcase(s, "resident", 0), resident);
	tcase_add_test(tu_tcase(s, "proto", 0), proto);
	tcase_add_test(tu_tcase(s, "tune", 0), tune);
	return tu_run(s);
}
