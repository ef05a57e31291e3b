/* check_json: the JSON parser accepts RFC 8259 exactly and rejects the rest with an offset. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "tests/testutil.h"

/* Parse text[0..len) from an exact-size heap copy (no NUL after it), so
 * ASan sees any read past the end. */
static int parse_n(const char *text, size_t len, struct json_value **v, struct uwerr *e)
{
	char *copy = malloc(len ? len : 1);
	ck_assert_ptr_nonnull(copy);
	memcpy(copy, text, len);
	uwerr_clear(e);
	int r = json_parse(copy, len, v, e);
	free(copy);
	return r;
}

static struct json_value *parse_ok(const char *text)
{
	struct json_value *v = NULL;
	struct uwerr e;
	int r = parse_n(text, strlen(text), &v, &e);
	ck_assert_msg(r == 0, "'%s' rejected: %s", text, e.msg);
	ck_assert_ptr_nonnull(v);
	return v;
}

/* The parse must fail with EINVAL and a message naming the byte offset. */
static void parse_bad_n(const char *text, size_t len)
{
	struct json_value *v = (struct json_value *)1;
	struct uwerr e;
	int r = parse_n(text, len, &v, &e);
	ck_assert_msg(r == -EINVAL, "'%.*s' gave %d, expected -EINVAL", (int)len, text, r);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(e.code, EINVAL);
	ck_assert_msg(strncmp(e.msg, "JSON: offset ", 13) == 0, "message '%s' names no offset", e.msg);
}

static void parse_bad(const char *text)
{
	parse_bad_n(text, strlen(text));
}

/* The failure is reported at this offset, with this reason. */
static void parse_bad_at_n(const char *text, size_t len, size_t off, const char *why)
{
	struct json_value *v;
	struct uwerr e;
	char want[64];
	ck_assert_int_eq(parse_n(text, len, &v, &e), -EINVAL);
	snprintf(want, sizeof(want), "JSON: offset %zu: ", off);
	ck_assert_msg(strncmp(e.msg, want, strlen(want)) == 0, "'%.*s': message '%s', wanted offset %zu",
		      (int)(len < 64 ? len : 64), text, e.msg, off);
	ck_assert_msg(strstr(e.msg, why), "'%.*s': message '%s' lacks '%s'", (int)(len < 64 ? len : 64), text,
		      e.msg, why);
}

static void parse_bad_at(const char *text, size_t off, const char *why)
{
	parse_bad_at_n(text, strlen(text), off, why);
}

static void check_str(const struct json_value *v, const char *bytes, size_t len)
{
	ck_assert_int_eq(v->type, JSON_STR);
	ck_assert_uint_eq(v->u.str.len, len);
	ck_assert_mem_eq(v->u.str.s, bytes, len);
	ck_assert_int_eq(v->u.str.s[len], '\0');
}

START_TEST(scalars)
{
	struct json_value *v = parse_ok(" \t\r\nnull \n");
	ck_assert_int_eq(v->type, JSON_NULL);
	json_free(v);
	v = parse_ok("true");
	ck_assert_int_eq(v->type, JSON_BOOL);
	ck_assert_int_eq(v->u.b, 1);
	json_free(v);
	v = parse_ok("false");
	ck_assert_int_eq(v->type, JSON_BOOL);
	ck_assert_int_eq(v->u.b, 0);
	json_free(v);

	static const struct {
		const char *text;
		double d;
	} nums[] = {
		{"0", 0}, {"-0", -0.0}, {"7", 7}, {"-12", -12}, {"3.25", 3.25}, {"-0.5", -0.5},
		{"1e3", 1000}, {"1E+3", 1000}, {"25e-2", 0.25}, {"1.5E10", 1.5e10},
		{"18446744073709551615", 18446744073709551615.0},
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		v = parse_ok(nums[i].text);
		ck_assert_int_eq(v->type, JSON_NUM);
		ck_assert_msg(v->u.num.d == nums[i].d, "%s parsed as %g", nums[i].text, v->u.num.d);
		ck_assert_uint_eq(v->u.num.text_len, strlen(nums[i].text));
		ck_assert_mem_eq(v->u.num.text, nums[i].text, strlen(nums[i].text));
		json_free(v);
	}
	/* The text of a number is kept even where a double cannot hold it. */
	v = parse_ok(" 1e999 ");
	ck_assert_str_eq(v->u.num.text, "1e999");
	json_free(v);
}
END_TEST

START_TEST(strings)
{
	struct json_value *v = parse_ok("\"\"");
	check_str(v, "", 0);
	json_free(v);
	v = parse_ok("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"");
	check_str(v, "\" \\ / \b \f \n \r \t", 15);
	json_free(v);
	/* \u escapes to UTF-8: 1, 2, 3 and (a surrogate pair) 4 bytes; \u0000 kept. */
	v = parse_ok("\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\\u0000z\"");
	check_str(v, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0z", 12);
	json_free(v);
	v = parse_ok("\"\\uDBFF\\uDFFF\"");  /* U+10FFFF, the last code point */
	check_str(v, "\xf4\x8f\xbf\xbf", 4);
	json_free(v);
	/* Raw UTF-8 at the edges of each length class passes through. */
	const char raw[] = "\"\x7f \xc2\x80 \xdf\xbf \xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 \xef\xbf\xbf "
			   "\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf\"";
	v = parse_ok(raw);
	check_str(v, raw + 1, sizeof(raw) - 3);
	json_free(v);
}
END_TEST

START_TEST(containers)
{
	struct json_value *v = parse_ok("[]");
	ck_assert_int_eq(v->type, JSON_ARR);
	ck_assert_uint_eq(v->u.arr.n, 0);
	json_free(v);
	v = parse_ok("{ }");
	ck_assert_int_eq(v->type, JSON_OBJ);
	ck_assert_uint_eq(v->u.obj.n, 0);
	json_free(v);

	v = parse_ok(" { \"b\" : [1, \"x\", [true, null], {}], \"a\":{\"k\":false}, \"b\": 2 } ");
	ck_assert_int_eq(v->type, JSON_OBJ);
	ck_assert_uint_eq(v->u.obj.n, 3);
	ck_assert_str_eq(v->u.obj.m[0].key, "b");
	ck_assert_str_eq(v->u.obj.m[1].key, "a");
	ck_assert_str_eq(v->u.obj.m[2].key, "b");
	const struct json_value *b = json_get(v, "b");
	ck_assert_ptr_eq(b, &v->u.obj.m[0].value);  /* the first of a repeated key */
	ck_assert_int_eq(b->type, JSON_ARR);
	ck_assert_uint_eq(b->u.arr.n, 4);
	ck_assert_str_eq(b->u.arr.v[0].u.num.text, "1");
	check_str(&b->u.arr.v[1], "x", 1);
	ck_assert_int_eq(b->u.arr.v[2].type, JSON_ARR);
	ck_assert_uint_eq(b->u.arr.v[2].u.arr.n, 2);
	ck_assert_int_eq(b->u.arr.v[2].u.arr.v[0].type, JSON_BOOL);
	ck_assert_int_eq(b->u.arr.v[2].u.arr.v[1].type, JSON_NULL);
	ck_assert_int_eq(b->u.arr.v[3].type, JSON_OBJ);
	const struct json_value *k = json_get(json_get(v, "a"), "k");
	ck_assert_ptr_nonnull(k);
	ck_assert_int_eq(k->type, JSON_BOOL);
	ck_assert_int_eq(k->u.b, 0);
	ck_assert_ptr_null(json_get(v, "c"));
	ck_assert_ptr_null(json_get(b, "b"));  /* not an object */
	json_free(v);

	/* Keys may hold escapes and NUL; json_get matches the unescaped bytes. */
	v = parse_ok("{\"\\u0061\\u0062\":1}");
	ck_assert_ptr_nonnull(json_get(v, "ab"));
	json_free(v);

	/* A large array: many children of one container, and many containers. */
	size_t n = 100000;
	char *big = malloc(n * 6 + 3);
	size_t at = 0;
	big[at++] = '[';
	for (size_t i = 0; i < n; i++)
		at += (size_t)sprintf(big + at, "%s[%zu]", i ? "," : "", i % 10);
	big[at++] = ']';
	big[at] = '\0';
	v = parse_ok(big);
	ck_assert_uint_eq(v->u.arr.n, n);
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_eq(v->u.arr.v[i].u.arr.n, 1);
		ck_assert_int_eq(v->u.arr.v[i].u.arr.v[0].u.num.text[0], (int)('0' + i % 10));
	}
	json_free(v);
	free(big);
	json_free(NULL);
}
END_TEST

START_TEST(depth)
{
	char buf[2 * (JSON_MAX_DEPTH + 1) + 1];
	for (int d = 1; d <= JSON_MAX_DEPTH + 1; d++) {
		memset(buf, '[', (size_t)d);
		memset(buf + d, ']', (size_t)d);
		buf[2 * d] = '\0';
		struct json_value *v = NULL;
		struct uwerr e;
		int r = parse_n(buf, (size_t)(2 * d), &v, &e);
		if (d <= JSON_MAX_DEPTH) {
			ck_assert_msg(r == 0, "depth %d: %s", d, e.msg);
			json_free(v);
		} else {
			ck_assert_int_eq(r, -EINVAL);
			ck_assert_msg(strstr(e.msg, "deeper"), "%s", e.msg);
		}
	}
	/* A bomb of a million brackets fails fast, at the first one too deep. */
	size_t n = 1000000;
	char *bomb = malloc(n);
	memset(bomb, '[', n);
	parse_bad_at_n(bomb, n, JSON_MAX_DEPTH, "deeper");
	/* Objects and arrays interleaved: {"a":[{"a":[... */
	for (size_t i = 0; i + 6 <= n; i += 6)
		memcpy(bomb + i, "{\"a\":[", 6);
	parse_bad_at_n(bomb, n, 6 * (JSON_MAX_DEPTH / 2), "deeper");
	free(bomb);
}
END_TEST

START_TEST(malformed)
{
	static const char *bad[] = {
		/* truncated or empty */
		"", "   ", "[", "{", "[1", "[1,", "{\"a\"", "{\"a\":", "{\"a\":1", "\"abc", "\"a\\", "tru", "nul", "fals",
		/* structure */
		"]", "}", "[1 2]", "[1,]", "[,1]", "[,]", "{\"a\":1,}", "{,}", "{a:1}", "{'a':1}", "{\"a\"}", "{\"a\" 1}",
		"{1:2}", "{\"a\":1 \"b\":2}", "[}", "{]", "'a'", "True", "NULL", "undefined",
		/* trailing garbage */
		"[1]]", "{} {}", "nullx", "1 2", "\"a\"b", "true,", "0 ,",
		/* numbers */
		"01", "-01", "00", "1.", ".5", "-", "+1", "1e", "1e+", "1E-", "0x10", "1.e5", "NaN", "Infinity",
		"-Infinity", "--1", "1.2.3", "- 1",
		/* bad escapes */
		"\"\\x\"", "\"\\'\"", "\"\\U0041\"", "\"\\u12\"", "\"\\u12g4\"", "\"\\u\"", "\"\\0\"", "\"\\ \"",
		/* surrogates */
		"\"\\ud800\"", "\"\\udc00\"", "\"\\udfff\\ud800\"", "\"\\ud800\\u0041\"", "\"\\ud800x\"",
		"\"\\ud800\\ud800\"", "\"\\ud800\\\"", "\"\\ud83d\\ude0\"",
		/* invalid UTF-8 */
		"\"\x80\"", "\"\xbf\"", "\"\xc0\x80\"", "\"\xc1\xbf\"", "\"\xe0\x80\x80\"", "\"\xe0\x9f\xbf\"",
		"\"\xed\xa0\x80\"", "\"\xed\xbf\xbf\"", "\"\xf0\x80\x80\x80\"", "\"\xf0\x8f\xbf\xbf\"",
		"\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xff\"", "\"\xfe\"", "\"\xe2\x82\"", "\"\xe2\x82",
		"\"\xf0\x9f\x98\"", "\"\xc3\"", "\"\xc3", "\xc3\xa9", "[\"\xe2\x28\xa1\"]",
		/* control characters in strings */
		"\"a\x01" "b\"", "\"\t\"", "\"\n\"", "\"\r\"", "\"\x1f\"", "{\"\x02\":1}",
		/* whitespace RFC 8259 does not allow */
		"\f1", "1\v", "\xc2\xa0" "1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		parse_bad(bad[i]);
	parse_bad_n("[1,\0]", 5);
	parse_bad_n("\"a\0b\"", 5);
	parse_bad_n("1\0", 2);
}
END_TEST

START_TEST(offsets)
{
	parse_bad_at("[1,2,]", 5, "expected a value");
	parse_bad_at("{\"a\" 1}", 5, "expected ':'");
	parse_bad_at("[1 2]", 3, "expected ',' or ']'");
	parse_bad_at("{\"a\":1 \"b\":2}", 7, "expected ',' or '}'");
	parse_bad_at("{\"a\":1,}", 7, "expected a string key");
	parse_bad_at("  007", 2, "leading zero");
	parse_bad_at("[\"ab\\qc\"]", 4, "bad escape");
	parse_bad_at("\"x\\ud800\"", 2, "surrogate");
	parse_bad_at("\"xy\\udc01\"", 3, "lone low surrogate");
	parse_bad_at("[\"abc\xc3\x28\"]", 5, "UTF-8");
	parse_bad_at("\"ab\x07\"", 3, "control character 0x07");
	parse_bad_at("{}  x", 4, "trailing");
	parse_bad_at("[\"abc", 1, "unterminated string");
	parse_bad_at("[1.]", 3, "digit");
}
END_TEST

/* Each proper prefix of a document that opens with '{' is invalid; the whole
 * is valid. With exact-size buffers this also proves no read past len. */
START_TEST(truncation)
{
	const char doc[] = "{\"name\":\"caf\xc3\xa9 \\u00e9\\ud83d\\ude00\",\"n\":[-1.5e+3,0,18446744073709551615],"
			   "\"t\":true,\"f\":false,\"z\":null,\"o\":{\"k\":[[],{}]}}";
	size_t len = sizeof(doc) - 1;
	for (size_t i = 0; i < len; i++)
		parse_bad_n(doc, i);
	json_free(parse_ok(doc));
}
END_TEST

static void u64_case(const char *text, int want_r, uint64_t want)
{
	struct json_value *v = parse_ok(text);
	uint64_t x = 0xdeadbeef;
	int r = json_u64(v, &x);
	ck_assert_msg(r == want_r, "json_u64(%s) = %d, expected %d", text, r, want_r);
	if (r == 0)
		ck_assert_msg(x == want, "json_u64(%s) = %llu", text, (unsigned long long)x);
	else
		ck_assert_msg(x == 0xdeadbeef, "json_u64(%s) wrote on failure", text);
	json_free(v);
}

START_TEST(u64)
{
	u64_case("0", 0, 0);
	u64_case("1", 0, 1);
	u64_case("4294967296", 0, 4294967296ull);
	u64_case("9007199254740993", 0, 9007199254740993ull);  /* not a double */
	u64_case("18446744073709551615", 0, UINT64_MAX);
	u64_case("18446744073709551614", 0, UINT64_MAX - 1);
	u64_case("18446744073709551616", -ERANGE, 0);
	u64_case("18446744073709551620", -ERANGE, 0);
	u64_case("99999999999999999999999999", -ERANGE, 0);
	u64_case("-1", -EINVAL, 0);
	u64_case("-0", -EINVAL, 0);
	u64_case("1.0", -EINVAL, 0);
	u64_case("1e3", -EINVAL, 0);
	u64_case("10E0", -EINVAL, 0);
	u64_case("18446744073709551616.0", -EINVAL, 0);
	u64_case("\"5\"", -EINVAL, 0);
	u64_case("null", -EINVAL, 0);
	u64_case("[5]", -EINVAL, 0);
	uint64_t x;
	ck_assert_int_eq(json_u64(NULL, &x), -EINVAL);
	/* A hand-made number with a leading zero, which the parser never makes. */
	struct json_value hand = {.type = JSON_NUM, .u.num = {.text = "012", .text_len = 3}};
	ck_assert_int_eq(json_u64(&hand, &x), -EINVAL);
}
END_TEST

/* Random bytes and random mutations of a valid document: the parser either
 * accepts or reports an offset, never crashes or reads out of bounds. */
START_TEST(fuzz)
{
	uint64_t s = tu_seed();
	const char doc[] = "{\"a\":[1,-2.5e3,\"x\\u00e9\\ud83d\\ude00y\",true,false,null,{\"b\":{}}],\"c\":\"\xc3\xa9\"}";
	const char alphabet[] = "{}[],:\"\\u0123456789abcdefABCDEF.eE+-tfn \t\n\x80\xc3\xa9\xed\xf0\x9f\x01";
	char buf[256];
	int accepted = 0;
	for (int iter = 0; iter < 200000; iter++) {
		size_t len;
		if (iter % 2) {
			len = sizeof(doc) - 1;
			memcpy(buf, doc, len);
			int flips = 1 + (int)(tu_rand(&s) % 4);
			for (int k = 0; k < flips && len; k++) {
				size_t at = tu_rand(&s) % len;
				uint64_t how = tu_rand(&s);
				if (how % 3 == 0)
					buf[at] = (char)(how >> 8);
				else if (how % 3 == 1)
					buf[at] = alphabet[(how >> 8) % (sizeof(alphabet) - 1)];
				else
					len = at;  /* truncate */
			}
		} else {
			len = tu_rand(&s) % 40;
			for (size_t i = 0; i < len; i++)
				buf[i] = alphabet[tu_rand(&s) % (sizeof(alphabet) - 1)];
		}
		struct json_value *v = NULL;
		struct uwerr e;
		int r = parse_n(buf, len, &v, &e);
		if (r == 0) {
			ck_assert_ptr_nonnull(v);
			accepted++;
			json_free(v);
		} else {
			ck_assert_int_eq(r, -EINVAL);
			ck_assert_ptr_null(v);
			ck_assert_msg(strncmp(e.msg, "JSON: offset ", 13) == 0, "%s", e.msg);
		}
	}
	ck_assert_int_gt(accepted, 0);  /* some mutations (e.g. digit for digit) stay valid */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("json");
	TCase *tc = tu_tcase(s, "core", 120);
	tcase_add_test(tc, scalars);
	tcase_add_test(tc, strings);
	tcase_add_test(tc, containers);
	tcase_add_test(tc, depth);
	tcase_add_test(tc, malformed);
	tcase_add_test(tc, offsets);
	tcase_add_test(tc, truncation);
	tcase_add_test(tc, u64);
	tcase_add_test(tc, fuzz);
	return tu_run(s);
}
