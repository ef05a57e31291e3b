/* err: one error record carried down a call chain, so messages read
 * "what failed, on what, and why" (load llama: shard 3: offsets past end). */
#ifndef UW_COMMON_ERR_H
#define UW_COMMON_ERR_H

#include <errno.h>
#include <stddef.h>

#define UWERR_MSG_MAX 512

struct uwerr {
	int code;                  /* positive errno, 0 when no error */
	char msg[UWERR_MSG_MAX];
};

/* Record an error and return -code, so callers write
 * `return uwerr_set(e, EINVAL, "shape %d", n);`. e may be NULL. */
int uwerr_set(struct uwerr *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepend "context: " to the message already recorded; returns -code. */
int uwerr_prefix(struct uwerr *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

void uwerr_clear(struct uwerr *e);

/* Checked size arithmetic: return 0 on success, -EOVERFLOW on overflow. */
static inline int uw_mul_size(size_t a, size_t b, size_t *out)
{
	return __builtin_mul_overflow(a, b, out) ? -EOVERFLOW : 0;
}
static inline int uw_add_size(size_t a, size_t b, size_t *out)
{
	return __builtin_add_overflow(a, b, out) ? -EOVERFLOW : 0;
}

#endif
