/* log: unweightd's log lines on stderr, each prefixed "<N>" with its syslog
 * priority so that journald files it at the right level. */
#ifndef UWD_LOG_H
#define UWD_LOG_H

#include <syslog.h>

/* Lines above level (LOG_ERR .. LOG_DEBUG) are dropped. */
void log_set_level(int level);
/* "err", "warning", "notice", "info", "debug" -> LOG_*; -1 if unknown. */
int log_level_parse(const char *name);

/* One line, written with a single write(2) so threads never interleave.
 * Control characters (a newline in a client-supplied path) become '?'. */
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
