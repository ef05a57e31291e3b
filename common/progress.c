/* progress: the terminal progress bar (progress.h). */
#include "config.h"  /* first: _GNU_SOURCE */
#include "common/progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define REDRAW_NS 100000000ll   /* a terminal needs no more than 10 frames a second */
#define TAIL_MAX 52             /* " 100% 1023.9 GiB/1023.9 GiB 1023.9 MiB/s ETA 99:59" */

struct progress {
	pthread_mutex_t lock;
	char label[32];
	uint64_t total, done;
	int64_t start_ns, drawn_ns;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void human(char *buf, size_t n, double v)
{
	const char *unit = "KMGTP";
	int u = -1;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, n, "%.0f B", v);
	else
		snprintf(buf, n, "%.1f %ciB", v, unit[u]);
}

static void draw(struct progress *p, int64_t now)
{
	struct winsize ws;
	int cols = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col ? ws.ws_col : 80;
	double frac = p->total ? (double)p->done / (double)p->total : 1.0;
	double secs = (double)(now - p->start_ns) / 1e9;
	double rate = secs > 0 ? (double)p->done / secs : 0;
	char done[16], total[16], speed[16], eta[48] = "";
	human(done, sizeof(done), (double)p->done);
	human(total, sizeof(total), (double)p->total);
	human(speed, sizeof(speed), rate);
	if (rate > 0 && p->done < p->total) {
		long left = (long)((double)(p->total - p->done) / rate);
		snprintf(eta, sizeof(eta), " ETA %ld:%02ld", left / 60, left % 60);
	}
	char tail[128];
	snprintf(tail, sizeof(tail), " %3.0f%% %s/%s %s/s%s", frac * 100, done, total, speed, eta);
	/* A bar of steady width: room for the longest tail, not this one. */
	int width = cols - (int)strlen(p->label) - TAIL_MAX - 4;
	if (width > 40)
		width = 40;
	char bar[48];
	int fill = width > 0 ? (int)(frac * width) : 0;
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width > 0 ? width : 0] = '\0';
	/* \033[K erases what a longer previous frame left behind. */
	fprintf(stderr, "\r%s [%s]%s\033[K", p->label, bar, tail);
	fflush(stderr);
	p->drawn_ns = now;
}

struct progress *progress_new(const char *label, uint64_t total)
{
	if (!isatty(STDERR_FILENO))
		return NULL;
	struct progress *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	snprintf(p->label, sizeof(p->label), "%s", label);
	p->total = total;
	p->start_ns = now_ns();
	draw(p, p->start_ns);
	return p;
}

void progress_add(struct progress *p, uint64_t n)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->done += n;
	int64_t now = now_ns();
	if (now - p->drawn_ns >= REDRAW_NS || p->done >= p->total)
		draw(p, now);
	pthread_mutex_unlock(&p->lock);
}

void progress_free(struct progress *p)
{
	if (!p)
		return;
	fprintf(stderr, "\r\033[K");
	fflush(stderr);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
