/* err: formatting of the error record (see err.h). */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int uwerr_set(struct uwerr *e, int code, const char *fmt, ...)
{
	if (code <= 0)
		code = EIO;
	if (e) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
		e->code = code;
	}
	return -code;
}

int uwerr_prefix(struct uwerr *e, const char *fmt, ...)
{
	if (!e)
		return -EIO;
	if (e->code == 0)
		e->code = EIO;
	char head[UWERR_MSG_MAX], old[UWERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	/* Compose in room for both, then keep what fits: the end gives way. */
	char both[2 * UWERR_MSG_MAX + 2];
	snprintf(both, sizeof(both), "%s: %s", head, old);
	snprintf(e->msg, sizeof(e->msg), "%.*s", (int)(sizeof(e->msg) - 1), both);
	return -e->code;
}

void uwerr_clear(struct uwerr *e)
{
	if (e) {
		e->code = 0;
		e->msg[0] = '\0';
	}
}
