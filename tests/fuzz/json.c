/* json: json_parse on any bytes; an accepted document must be a tree that
 * holds together (strings NUL-terminated at their length, depth within its
 * bound, json_get finding the first of every key). */
#include "config.h"

#include <string.h>

#include "common/json.h"
#include "tests/fuzz/fuzz.h"

static void walk(const struct json_value *v, int depth)
{
	FUZZ_CHECK(depth <= JSON_MAX_DEPTH);
	uint64_t u;
	switch (v->type) {
	case JSON_NULL:
		break;
	case JSON_BOOL:
		FUZZ_CHECK(v->u.b == 0 || v->u.b == 1);
		break;
	case JSON_NUM:
		FUZZ_CHECK(v->u.num.text_len > 0);
		json_u64(v, &u);
		break;
	case JSON_STR:
		FUZZ_CHECK(v->u.str.s[v->u.str.len] == '\0');
		break;
	case JSON_ARR:
		for (size_t i = 0; i < v->u.arr.n; i++)
			walk(&v->u.arr.v[i], depth + 1);
		break;
	case JSON_OBJ:
		for (size_t i = 0; i < v->u.obj.n; i++) {
			const struct json_member *m = &v->u.obj.m[i];
			FUZZ_CHECK(m->key[m->key_len] == '\0');
			if (strlen(m->key) == m->key_len) {
				const struct json_value *got = json_get(v, m->key);
				FUZZ_CHECK(got && got <= &m->value);
			}
			walk(&m->value, depth + 1);
		}
		break;
	default:
		FUZZ_CHECK(!"unknown JSON type");
	}
}

int fuzz_json(const uint8_t *data, size_t size)
{
	struct json_value *v = NULL;
	struct uwerr e = {0};
	if (json_parse((const char *)data, size, &v, &e) < 0) {
		FUZZ_CHECK(e.code != 0 && e.msg[0]);
		return 0;
	}
	walk(v, 0);
	json_free(v);
	return 0;
}

FUZZ_ENTRY(json)
