/* progress: a progress bar on stderr for long work (pack, unpack,
 * inspect), drawn only when stderr is a terminal. */
#ifndef UW_COMMON_PROGRESS_H
#define UW_COMMON_PROGRESS_H

#include <stdint.h>

struct progress;

/* A bar for total bytes of work, or NULL when stderr is not a terminal
 * (or out of memory): every function below accepts NULL and does nothing. */
struct progress *progress_new(const char *label, uint64_t total);

/* n more bytes done. Thread-safe; redraws at most ten times a second. */
void progress_add(struct progress *p, uint64_t n);

/* Erase the bar and free it. */
void progress_free(struct progress *p);

#endif
