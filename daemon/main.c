/* unweightd: holds LLM weights compressed in memory and shares read-only
 * mappings of them with inference workers over a Unix socket. See
 * unweightd(8); this file only wires the parts together. */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "daemon/allow.h"
#include "daemon/backend.h"
#include "daemon/conf.h"
#include "daemon/fdstore.h"
#include "daemon/loader.h"
#include "daemon/log.h"
#include "daemon/registry.h"
#include "daemon/server.h"
#include "daemon/verify.h"
#include "daemon/tune.h"
#include "daemon/uwd.h"

static void log_settings(const struct uwd *d)
{
	const struct uwd_config *c = d->cfg;
	log_info("unweightd %s: backend %s, max_clients %u, io_timeout_ms %u", PACKAGE_VERSION,
		 d->be->ops->name, c->max_clients, c->io_timeout_ms);
	for (int i = 0; i < d->be->ndev; i++)
		log_info("device %s: budget %llu bytes (%.1f GiB)", d->be->dev[i].name,
			 (unsigned long long)d->be->dev[i].budget,
			 (double)d->be->dev[i].budget / (1u << 30));
	for (size_t i = 0; i < c->nallow; i++)
		log_info("allow_dir %s", c->allow_dirs[i]);
	log_info("admin (load, evict, verify, tune): %s; attach: %s", c->admin.text, c->attach.text);
	for (size_t i = 0; i < c->nattach_models; i++)
		log_info("attach.%s: %s", c->attach_models[i].model, c->attach_models[i].acl.text);
	if (!c->nallow)
		log_warning("no allow_dir is configured: every load will be refused");
}

int main(int argc, char **argv)
{
	struct uwd_config cfg;
	struct uwerr e = {0};
	struct uwd d = {.cfg = &cfg, .listen_fd = -1, .wake_fd = -1};
	int rc = config_load(&cfg, argc, argv, &e);
	if (rc) {
		if (rc < 0)
			fprintf(stderr, "unweightd: %s\n", e.msg);
		config_free(&cfg);
		return rc < 0 ? 2 : 0;
	}
	log_set_level(cfg.log_level);
	/* Before any thread exists, so that every thread inherits the mask
	 * and the signals reach only the server's signalfd. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((rc = allow_new(&cfg, &d.allow, &e)) || (rc = backend_open(&cfg, &d.be, &e)) ||
	    (rc = registry_new(d.be, &d.reg, &e)) || (rc = loader_new(&d, &d.ld, &e)) ||
	    (rc = verifier_new(&d, &d.vf, &e)) || (rc = tuner_new(&d, &d.tune, &e)))
		goto out;
	if ((d.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		rc = uwerr_set(&e, errno, "eventfd: %s", strerror(errno));
		goto out;
	}
	d.started = uwd_now();
	log_settings(&d);
	/* Before the socket serves: a re-adopted model is ready when it does. */
	if ((rc = fdstore_adopt(&d, &e)))
		goto out;
	rc = server_run(&d, &e);
	/* Connections are gone: now the loads (canceled), the periodic verify
	 * and the tuner can be joined; the tuner's references go before the
	 * registry. */
	loader_free(d.ld);
	d.ld = NULL;
	verifier_free(d.vf);
	d.vf = NULL;
	tuner_free(d.tune);
	d.tune = NULL;
	if (!rc)
		log_notice("stopped");
out:
	if (rc) {
		log_err("%s", e.msg);
		sd_notifyf(0, "STATUS=failed: %s\nERRNO=%d", e.msg, -rc);
	}
	loader_free(d.ld);
	verifier_free(d.vf);
	tuner_free(d.tune);
	registry_free(d.reg);
	backend_close(d.be);
	allow_free(d.allow);
	if (d.wake_fd >= 0)
		close(d.wake_fd);
	if (d.listen_fd >= 0)
		close(d.listen_fd);
	config_free(&cfg);
	return rc ? 1 : 0;
}
