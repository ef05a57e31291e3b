/* stats: the JSON document of `stats [NAME]`. Its keys are an interface:
 * unweightd(8), STATISTICS, lists them; add keys, never rename them. */
#ifndef UWD_STATS_H
#define UWD_STATS_H

#include "common/err.h"

struct uwd;

/* Every model (name NULL or ""), or the one named. *out is malloc'd. */
int stats_json(struct uwd *d, const char *name, char **out, struct uwerr *e);

#endif
