/* cudrv: dlopen of libcuda.so.1 and lookup of the functions in cudrv.h. */
#include "config.h"

#include "common/cudrv.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#define CUDRV_STR2(x) #x
#define CUDRV_STR(x) CUDRV_STR2(x)   /* after expansion: the versioned name */

static struct cudrv drv;
static struct uwerr why;
static int loaded;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		uwerr_set(&why, ENOENT, "no NVIDIA driver: cannot load libcuda.so.1 (%s)",
			  dlerror());
		return;
	}
#define CUDRV_LOAD(f)                                                            \
	if (!(*(void **)&drv.f = dlsym(h, CUDRV_STR(f)))) {                      \
		uwerr_set(&why, ENOSYS, "the NVIDIA driver is too old: libcuda.so.1 " \
			  "has no %s", CUDRV_STR(f));                            \
		return;                                                          \
	}
	CUDRV_FUNCS(CUDRV_LOAD)
#undef CUDRV_LOAD
	loaded = 1;
}

const struct cudrv *cudrv_get(struct uwerr *e)
{
	pthread_once(&once, load);
	if (!loaded) {
		uwerr_set(e, why.code, "%s", why.msg);
		return NULL;
	}
	return &drv;
}

const char *cudrv_strerror(const struct cudrv *cu, CUresult rc, char *buf, size_t n)
{
	const char *name = NULL, *text = NULL;
	if (cu) {
		cu->cuGetErrorName(rc, &name);
		cu->cuGetErrorString(rc, &text);
	}
	if (name)
		snprintf(buf, n, "%s: %s", name, text ? text : "?");
	else
		snprintf(buf, n, "CUDA error %d", (int)rc);
	return buf;
}
