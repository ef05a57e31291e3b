/* tune: tune_parse on any bytes. A rejected file leaves the set as it was
 * and says why; an accepted one formats back to text that parses to the
 * same entries, and its lookup table finds each of them. */
#include "config.h"

#include <string.h>

#include "kernels/tunecache.h"
#include "tests/fuzz/fuzz.h"

static int same(const struct tune_entry *a, const struct tune_entry *b)
{
	return tune_key_eq(&a->key, &b->key) && a->rows == b->rows && a->cols == b->cols &&
	       a->bucket == b->bucket && !memcmp(&a->c, &b->c, sizeof(a->c));
}

int fuzz_tune(const uint8_t *data, size_t size)
{
	struct tune_set s = {0}, t = {0};
	struct uwerr e = {0};
	unsigned ver;
	if (tune_parse((const char *)data, size, "fuzz", &s, &ver, &e) < 0) {
		FUZZ_CHECK(e.code != 0 && e.msg[0] && s.n == 0);
		return 0;
	}
	FUZZ_CHECK(s.n == 0 || ver == TUNE_FORMAT_VERSION);
	char *text = tune_format(&s);
	FUZZ_CHECK(text);
	FUZZ_CHECK(tune_parse(text, strlen(text), "formatted", &t, NULL, &e) == 0);
	FUZZ_CHECK(t.n == s.n);
	for (size_t i = 0; i < s.n; i++) {
		FUZZ_CHECK(same(&s.e[i], &t.e[i]));
		FUZZ_CHECK(tune_bucket(s.e[i].bucket) == s.e[i].bucket);
		struct tune_table *tab;
		FUZZ_CHECK(tune_table_build(&s, &s.e[i].key, NULL, &tab, &e) == 0);
		const struct tune_choice *c = tune_table_find(tab, s.e[i].rows, s.e[i].cols,
							      s.e[i].bucket);
		FUZZ_CHECK(c && !memcmp(c, &s.e[i].c, sizeof(*c)));
		tune_table_free(tab);
	}
	free(text);
	tune_set_free(&s);
	tune_set_free(&t);
	return 0;
}

FUZZ_ENTRY(tune)
