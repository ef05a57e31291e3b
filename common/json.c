/* json: a strict RFC 8259 parser into the tree of json.h, one arena per document. */
#include "common/json.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every node, string and number text of a document lives in one chain of
 * chunks, so json_free is a walk of the chain, never of the tree. */
struct chunk {
	struct chunk *next;
	size_t used, cap;
	max_align_t data[];
};

/* json_parse hands out &doc->root; json_free takes that pointer back. */
struct json_doc {
	struct json_value root;
	struct chunk *chunks;
};

struct parser {
	const unsigned char *s;
	size_t len, pos;
	struct uwerr *e;
	struct json_doc *doc;
	/* Children of the open containers, stacked: a container's children are
	 * moved to the arena in one piece when it closes. */
	struct json_value *vals;
	size_t nvals, capvals;
	struct json_member *mems;
	size_t nmems, capmems;
	char *str;                   /* the string being unescaped */
	size_t nstr, capstr;
};

#define CHUNK_MIN (64u << 10)

static void *arena_alloc(struct json_doc *d, size_t n)
{
	const size_t align = sizeof(max_align_t);
	if (n > SIZE_MAX - align)
		return NULL;
	n = (n + align - 1) / align * align;
	struct chunk *c = d->chunks;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > CHUNK_MIN ? n : CHUNK_MIN;
		if (cap > SIZE_MAX - sizeof(*c))
			return NULL;
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = d->chunks;
		c->used = 0;
		c->cap = cap;
		d->chunks = c;
	}
	void *p = (char *)c->data + c->used;
	c->used += n;
	return p;
}

static int fail(struct parser *p, size_t off, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, size_t off, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return uwerr_set(p->e, EINVAL, "JSON: offset %zu: %s", off, why);
}

static int oom(struct parser *p)
{
	return uwerr_set(p->e, ENOMEM, "JSON: offset %zu: out of memory", p->pos);
}

/* Grow a scratch array so that one more element fits. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 64, bytes;
	if (uw_mul_size(ncap, elem, &bytes))
		return -ENOMEM;
	void *a = realloc(*arr, bytes);
	if (!a)
		return -ENOMEM;
	*arr = a;
	*cap = ncap;
	return 0;
}

static int str_put(struct parser *p, const void *b, size_t n)
{
	while (p->capstr - p->nstr < n)
		if (grow((void **)&p->str, &p->capstr, p->capstr, 1))
			return oom(p);
	memcpy(p->str + p->nstr, b, n);
	p->nstr += n;
	return 0;
}

static void skip_ws(struct parser *p)
{
	while (p->pos < p->len) {
		unsigned char c = p->s[p->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

/* A description of the byte at pos for messages: 'x', 0xNN or end of input. */
static const char *what_at(struct parser *p, char buf[16])
{
	if (p->pos >= p->len)
		return "end of input";
	unsigned char c = p->s[p->pos];
	if (c >= 0x20 && c < 0x7f)
		snprintf(buf, 16, "'%c'", c);
	else
		snprintf(buf, 16, "byte 0x%02x", c);
	return buf;
}

static int expected(struct parser *p, const char *what)
{
	char buf[16];
	return fail(p, p->pos, "expected %s, found %s", what, what_at(p, buf));
}

/* Length of the valid UTF-8 sequence at pos (Unicode 15, table 3-7: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (avail < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

static int hex4(struct parser *p, size_t at, unsigned *out)
{
	if (p->len - at < 4)
		return fail(p, at, "truncated \\u escape");
	unsigned v = 0;
	for (size_t i = 0; i < 4; i++) {
		unsigned char c = p->s[at + i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return fail(p, at + i, "bad hex digit in \\u escape");
		v = v << 4 | d;
	}
	*out = v;
	return 0;
}

/* pos is just after "\u". */
static int unicode_escape(struct parser *p)
{
	size_t start = p->pos - 2;
	unsigned cp, lo;
	int r = hex4(p, p->pos, &cp);
	if (r)
		return r;
	p->pos += 4;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return fail(p, start, "lone low surrogate \\u%04x", cp);
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
			return fail(p, start, "high surrogate \\u%04x not followed by a low one", cp);
		if ((r = hex4(p, p->pos + 2, &lo)))
			return r;
		if (lo < 0xdc00 || lo > 0xdfff)
			return fail(p, start, "high surrogate \\u%04x followed by \\u%04x", cp, lo);
		p->pos += 6;
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	unsigned char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | cp >> 6);
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | cp >> 12);
		u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xf0 | cp >> 18);
		u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return str_put(p, u, n);
}

/* pos is at the opening quote; the result is NUL-terminated in the arena. */
static int parse_string(struct parser *p, char **out, size_t *outlen)
{
	size_t start = p->pos++;
	int r;
	p->nstr = 0;
	for (;;) {
		if (p->pos >= p->len)
			return fail(p, start, "unterminated string");
		unsigned char c = p->s[p->pos];
		if (c == '"')
			break;
		if (c < 0x20)
			return fail(p, p->pos, "control character 0x%02x in string", c);
		if (c == '\\') {
			if (p->len - p->pos < 2)
				return fail(p, start, "unterminated string");
			static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
			unsigned char x = p->s[p->pos + 1];
			const char *hit = x ? strchr(from, x) : NULL;
			p->pos += 2;
			if (x == 'u')
				r = unicode_escape(p);
			else if (hit)
				r = str_put(p, &to[hit - from], 1);
			else
				return fail(p, p->pos - 2, "bad escape '\\%c'", x >= 0x20 && x < 0x7f ? x : '?');
		} else if (c < 0x80) {
			r = str_put(p, &c, 1);
			p->pos++;
		} else {
			size_t n = utf8_len(p->s + p->pos, p->len - p->pos);
			if (!n)
				return fail(p, p->pos, "invalid UTF-8 in string");
			r = str_put(p, p->s + p->pos, n);
			p->pos += n;
		}
		if (r)
			return r;
	}
	p->pos++;
	char *s = arena_alloc(p->doc, p->nstr + 1);
	if (!s)
		return oom(p);
	if (p->nstr)
		memcpy(s, p->str, p->nstr);
	s[p->nstr] = '\0';
	*out = s;
	*outlen = p->nstr;
	return 0;
}

static int is_digit(struct parser *p)
{
	return p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9';
}

static int digits(struct parser *p, const char *after)
{
	if (!is_digit(p)) {
		char what[32];
		snprintf(what, sizeof(what), "a digit after %s", after);
		return expected(p, what);
	}
	while (is_digit(p))
		p->pos++;
	return 0;
}

static int parse_number(struct parser *p, struct json_value *v)
{
	size_t start = p->pos;
	int r;
	if (p->s[p->pos] == '-')
		p->pos++;
	if (p->pos < p->len && p->s[p->pos] == '0') {
		p->pos++;
		if (is_digit(p))
			return fail(p, start, "number with a leading zero");
	} else if ((r = digits(p, "'-'"))) {
		return r;
	}
	if (p->pos < p->len && p->s[p->pos] == '.') {
		p->pos++;
		if ((r = digits(p, "'.'")))
			return r;
	}
	if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
		p->pos++;
		if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
			p->pos++;
		if ((r = digits(p, "the exponent mark")))
			return r;
	}
	size_t n = p->pos - start;
	char *text = arena_alloc(p->doc, n + 1);
	if (!text)
		return oom(p);
	memcpy(text, p->s + start, n);
	text[n] = '\0';
	v->type = JSON_NUM;
	v->u.num.text = text;
	v->u.num.text_len = n;
	v->u.num.d = strtod(text, NULL);  /* overflow gives +-HUGE_VAL; the text stays exact */
	return 0;
}

static int parse_literal(struct parser *p, struct json_value *v)
{
	static const struct {
		const char *word;
		enum json_type type;
		int b;
	} lit[] = {{"true", JSON_BOOL, 1}, {"false", JSON_BOOL, 0}, {"null", JSON_NULL, 0}};
	for (size_t i = 0; i < sizeof(lit) / sizeof(lit[0]); i++) {
		size_t n = strlen(lit[i].word);
		if (p->len - p->pos >= n && memcmp(p->s + p->pos, lit[i].word, n) == 0) {
			p->pos += n;
			v->type = lit[i].type;
			v->u.b = lit[i].b;
			return 0;
		}
	}
	return expected(p, "a value");
}

static int parse_value(struct parser *p, struct json_value *v, int depth);

/* After an element: ',' (another follows) or the closing bracket. */
static int next_or_close(struct parser *p, char close, int *more)
{
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == ',') {
		p->pos++;
		*more = 1;
		return 0;
	}
	if (p->pos < p->len && p->s[p->pos] == close) {
		p->pos++;
		*more = 0;
		return 0;
	}
	return expected(p, close == ']' ? "',' or ']'" : "',' or '}'");
}

static int parse_array(struct parser *p, struct json_value *v, int depth)
{
	size_t base = p->nvals;
	int r, more = 1;
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == ']') {
		p->pos++;
		more = 0;
	}
	while (more) {
		struct json_value el;
		if ((r = parse_value(p, &el, depth)))
			return r;
		if (grow((void **)&p->vals, &p->capvals, p->nvals, sizeof(el)))
			return oom(p);
		p->vals[p->nvals++] = el;
		if ((r = next_or_close(p, ']', &more)))
			return r;
	}
	size_t n = p->nvals - base;
	v->type = JSON_ARR;
	v->u.arr.n = n;
	v->u.arr.v = NULL;
	if (n) {
		if (!(v->u.arr.v = arena_alloc(p->doc, n * sizeof(*p->vals))))
			return oom(p);
		memcpy(v->u.arr.v, p->vals + base, n * sizeof(*p->vals));
	}
	p->nvals = base;
	return 0;
}

static int parse_object(struct parser *p, struct json_value *v, int depth)
{
	size_t base = p->nmems;
	int r, more = 1;
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == '}') {
		p->pos++;
		more = 0;
	}
	while (more) {
		struct json_member m;
		skip_ws(p);
		if (p->pos >= p->len || p->s[p->pos] != '"')
			return expected(p, "a string key");
		if ((r = parse_string(p, &m.key, &m.key_len)))
			return r;
		skip_ws(p);
		if (p->pos >= p->len || p->s[p->pos] != ':')
			return expected(p, "':'");
		p->pos++;
		if ((r = parse_value(p, &m.value, depth)))
			return r;
		if (grow((void **)&p->mems, &p->capmems, p->nmems, sizeof(m)))
			return oom(p);
		p->mems[p->nmems++] = m;
		if ((r = next_or_close(p, '}', &more)))
			return r;
	}
	size_t n = p->nmems - base;
	v->type = JSON_OBJ;
	v->u.obj.n = n;
	v->u.obj.m = NULL;
	if (n) {
		if (!(v->u.obj.m = arena_alloc(p->doc, n * sizeof(*p->mems))))
			return oom(p);
		memcpy(v->u.obj.m, p->mems + base, n * sizeof(*p->mems));
	}
	p->nmems = base;
	return 0;
}

/* depth: containers already open around v; the recursion is bounded by
 * JSON_MAX_DEPTH, so a "[[[[..." bomb costs 64 frames, not a crash. */
static int parse_value(struct parser *p, struct json_value *v, int depth)
{
	skip_ws(p);
	if (p->pos >= p->len)
		return expected(p, "a value");
	unsigned char c = p->s[p->pos];
	if ((c == '[' || c == '{') && depth >= JSON_MAX_DEPTH)
		return fail(p, p->pos, "nested deeper than %d", JSON_MAX_DEPTH);
	switch (c) {
	case '[':
		return parse_array(p, v, depth + 1);
	case '{':
		return parse_object(p, v, depth + 1);
	case '"':
		v->type = JSON_STR;
		return parse_string(p, &v->u.str.s, &v->u.str.len);
	case '-':
	case '0' ... '9':
		return parse_number(p, v);
	default:
		return parse_literal(p, v);
	}
}

static void free_chunks(struct chunk *c)
{
	while (c) {
		struct chunk *next = c->next;
		free(c);
		c = next;
	}
}

int json_parse(const char *text, size_t len, struct json_value **out, struct uwerr *e)
{
	*out = NULL;
	struct json_doc *doc = calloc(1, sizeof(*doc));
	if (!doc)
		return uwerr_set(e, ENOMEM, "JSON: out of memory");
	struct parser p = {.s = (const unsigned char *)text, .len = len, .e = e, .doc = doc};
	int r = parse_value(&p, &doc->root, 0);
	if (!r) {
		skip_ws(&p);
		if (p.pos != p.len)
			r = fail(&p, p.pos, "trailing characters after the value");
	}
	free(p.vals);
	free(p.mems);
	free(p.str);
	if (r) {
		free_chunks(doc->chunks);
		free(doc);
		return r;
	}
	*out = &doc->root;
	return 0;
}

void json_free(struct json_value *v)
{
	if (!v)
		return;
	/* v is the root json_parse returned: the first member of its doc. */
	struct json_doc *doc = (struct json_doc *)v;
	free_chunks(doc->chunks);
	free(doc);
}

const struct json_value *json_get(const struct json_value *obj, const char *key)
{
	if (!obj || obj->type != JSON_OBJ)
		return NULL;
	size_t n = strlen(key);
	for (size_t i = 0; i < obj->u.obj.n; i++) {
		const struct json_member *m = &obj->u.obj.m[i];
		if (m->key_len == n && memcmp(m->key, key, n) == 0)
			return &m->value;
	}
	return NULL;
}

int json_u64(const struct json_value *v, uint64_t *out)
{
	if (!v || v->type != JSON_NUM || v->u.num.text_len == 0)
		return -EINVAL;
	const char *t = v->u.num.text;
	size_t n = v->u.num.text_len;
	if (n > 1 && t[0] == '0')
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (t[i] < '0' || t[i] > '9')
			return -EINVAL;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++)
		if (__builtin_mul_overflow(x, 10, &x) || __builtin_add_overflow(x, (uint64_t)(t[i] - '0'), &x))
			return -ERANGE;
	*out = x;
	return 0;
}
