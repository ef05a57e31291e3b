/* strbuf: a growable NUL-terminated string, for generated JSON and reports. */
#ifndef UW_COMMON_STRBUF_H
#define UW_COMMON_STRBUF_H

#include <stddef.h>

/* On allocation failure err is set and later appends do nothing. */
struct strbuf {
	char *s;
	size_t len, cap;
	int err;
};

void sb_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_append(struct strbuf *b, const char *s, size_t n);
/* Append s as a quoted JSON string, escaping what RFC 8259 requires. */
void sb_json_str(struct strbuf *b, const char *s, size_t n);
/* Hand the string to the caller (malloc'd; NULL on error) and reset b. */
char *sb_take(struct strbuf *b);
void sb_free(struct strbuf *b);

#endif
