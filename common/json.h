/* json: a strict, bounded JSON parser (RFC 8259) into a tree, for the
 * safetensors header, sharded indexes and the stats replies. */
#ifndef UW_COMMON_JSON_H
#define UW_COMMON_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define JSON_MAX_DEPTH 64

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ };

struct json_value {
	enum json_type type;
	union {
		int b;                          /* JSON_BOOL */
		struct {                        /* JSON_NUM: text kept for exact integers */
			double d;
			const char *text;       /* points into the parsed document copy */
			size_t text_len;
		} num;
		struct {                        /* JSON_STR: unescaped, NUL-terminated; */
			char *s;                /* may hold \u0000, hence len */
			size_t len;
		} str;
		struct {                        /* JSON_ARR */
			size_t n;
			struct json_value *v;
		} arr;
		struct {                        /* JSON_OBJ, in document order */
			size_t n;
			struct json_member *m;
		} obj;
	} u;
};

struct json_member {
	char *key;
	size_t key_len;
	struct json_value value;
};

/* Parse exactly one value spanning text[0..len) (whitespace around it
 * allowed). Strings must be valid UTF-8; depth is bounded by JSON_MAX_DEPTH.
 * Errors name the byte offset: "JSON: offset 17: expected ':'". */
int json_parse(const char *text, size_t len, struct json_value **out, struct uwerr *e);
/* Frees the whole tree: pass only the root json_parse returned (the tree
 * lives in one arena). */
void json_free(struct json_value *v);

/* The member named key of an object (the first, if repeated), or NULL. */
const struct json_value *json_get(const struct json_value *obj, const char *key);

/* A non-negative integer written without sign, fraction or exponent, exact
 * up to UINT64_MAX; -ERANGE / -EINVAL otherwise. */
int json_u64(const struct json_value *v, uint64_t *out);

#endif
