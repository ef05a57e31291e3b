/* verify: reading a resident model back and checking every tensor's bytes
 * against the CRC-32C its layout carries (set when it was encoded), on
 * request (VERIFY, `unweightctl verify`) and every verify_interval seconds
 * in a thread of its own. A corrupt model is logged at error level and
 * flagged in stats, and still served: unweightd(8), VERIFY, says why. */
#ifndef UWD_VERIFY_H
#define UWD_VERIFY_H

#include <stdint.h>

#include "common/err.h"

struct uwd;
struct model;
struct verifier;

/* What one verify found. */
struct verify_report {
	uint64_t tensors;         /* checked */
	uint64_t bytes;           /* resident bytes read */
	double seconds;
	uint64_t nbad;
	uint32_t *bad;            /* [nbad]: the bad tensors, indexes into the model's t */
};

/* The verifier of d, and its periodic thread when cfg->verify_interval is
 * set. */
int verifier_new(struct uwd *d, struct verifier **out, struct uwerr *e);
/* Shutting down: a verify in progress stops at its next batch, and the
 * periodic thread ends. */
void verifier_cancel(struct verifier *v);
/* Cancel, join the thread, free. NULL is fine. */
void verifier_free(struct verifier *v);

/* Verify m, a ready model the caller holds a reference on; by names who
 * asked, for the log. One verify runs at a time (each reads the whole
 * model). The result is kept for stats (registry_verified) and logged.
 * Returns 0 whatever the bytes were (r says), a negative errno when the
 * buffers could not be read (kept as an error too), or -ECANCELED when m
 * was evicted or the daemon stops meanwhile (nothing kept). */
int verify_model(struct verifier *v, struct model *m, const char *by,
		 struct verify_report *r, struct uwerr *e);
void verify_report_free(struct verify_report *r);

#endif
