/* policy: peers, user and group lists, and the checks (see policy.h). */
#include "config.h"

#include "daemon/policy.h"

#include <ctype.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/conf.h"

int peer_identify(int fd, struct peer *p, struct uwerr *e)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	*p = (struct peer){.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return uwerr_set(e, errno, "SO_PEERCRED: %s", strerror(errno));
	p->pid = cred.pid;
	p->uid = cred.uid;
	p->gid = cred.gid;
	snprintf(p->who, sizeof(p->who), "uid %ld gid %ld pid %ld", (long)cred.uid,
		 (long)cred.gid, (long)cred.pid);
	/* A peer in more groups than fit (ERANGE) is judged on its primary
	 * group alone: it may be refused what another group would allow,
	 * never the other way round. */
	len = sizeof(p->groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, p->groups, &len) == 0)
		p->ngroups = (int)(len / sizeof(gid_t));
	return 0;
}

static int push(void **arr, size_t *n, size_t size, const void *v)
{
	void *q = realloc(*arr, (*n + 1) * size);
	if (!q)
		return -ENOMEM;
	memcpy((char *)q + *n * size, v, size);
	*arr = q;
	(*n)++;
	return 0;
}

static int numeric(const char *s, unsigned long *out)
{
	char *end;
	if (!isdigit((unsigned char)*s))
		return 0;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return !*end && !errno && *out < (unsigned long)(uid_t)-1;
}

int policy_uid(const char *name, uid_t *out, char *why, size_t whylen)
{
	char buf[4096];
	unsigned long id;
	struct passwd pw, *res = NULL;
	if (numeric(name, &id)) {
		*out = (uid_t)id;
		return 0;
	}
	int rc = getpwnam_r(name, &pw, buf, sizeof(buf), &res);
	if (!res) {
		snprintf(why, whylen, "'%s': %s", name, rc ? strerror(rc) : "no such user");
		return -(rc ? rc : EINVAL);
	}
	*out = pw.pw_uid;
	return 0;
}

int policy_gid(const char *name, gid_t *out, char *why, size_t whylen)
{
	char buf[4096];
	unsigned long id;
	struct group gr, *res = NULL;
	if (numeric(name, &id)) {
		*out = (gid_t)id;
		return 0;
	}
	int rc = getgrnam_r(name, &gr, buf, sizeof(buf), &res);
	if (!res) {
		snprintf(why, whylen, "'%s': %s", name, rc ? strerror(rc) : "no such group");
		return -(rc ? rc : EINVAL);
	}
	*out = gr.gr_gid;
	return 0;
}

/* One word of a list: "*", "@group", or a user. */
static int acl_word(struct acl *a, const char *w, char *why, size_t whylen)
{
	if (strcmp(w, "*") == 0) {
		a->any = 1;
		return 0;
	}
	if (w[0] == '@') {
		gid_t g;
		int rc = policy_gid(w + 1, &g, why, whylen);
		return rc ? rc : push((void **)&a->gids, &a->ngids, sizeof(g), &g);
	}
	uid_t u;
	int rc = policy_uid(w, &u, why, whylen);
	return rc ? rc : push((void **)&a->uids, &a->nuids, sizeof(u), &u);
}

int acl_parse(const char *text, struct acl *a, char *why, size_t whylen)
{
	struct acl n = {0};
	char *copy = strdup(text);
	int rc = copy && (n.text = strdup(text)) ? 0 : -ENOMEM;
	char *save = NULL;
	for (char *w = copy ? strtok_r(copy, " \t,", &save) : NULL; w && !rc;
	     w = strtok_r(NULL, " \t,", &save))
		rc = acl_word(&n, w, why, whylen);
	free(copy);
	if (rc == -ENOMEM)
		snprintf(why, whylen, "out of memory");
	if (rc) {
		acl_free(&n);
		return rc;
	}
	acl_free(a);
	*a = n;
	return 0;
}

int acl_default_admin(struct acl *a)
{
	char text[96];
	uid_t me = geteuid();
	snprintf(text, sizeof(text), "root and unweightd's own uid (%ld)", (long)me);
	struct acl n = {0};
	uid_t root = 0;
	if (!(n.text = strdup(text)) || push((void **)&n.uids, &n.nuids, sizeof(root), &root) ||
	    (me != 0 && push((void **)&n.uids, &n.nuids, sizeof(me), &me))) {
		acl_free(&n);
		return -ENOMEM;
	}
	acl_free(a);
	*a = n;
	return 0;
}

int acl_allows(const struct acl *a, const struct peer *p)
{
	if (a->any)
		return 1;
	for (size_t i = 0; i < a->nuids; i++)
		if (a->uids[i] == p->uid)
			return 1;
	for (size_t i = 0; i < a->ngids; i++) {
		if (a->gids[i] == p->gid)
			return 1;
		for (int k = 0; k < p->ngroups; k++)
			if (a->gids[i] == p->groups[k])
				return 1;
	}
	return 0;
}

void acl_free(struct acl *a)
{
	free(a->uids);
	free(a->gids);
	free(a->text);
	*a = (struct acl){0};
}

int policy_admin(const struct uwd_config *c, const struct peer *p, const char *what,
		 struct uwerr *e)
{
	if (acl_allows(&c->admin, p))
		return 0;
	return uwerr_set(e, EPERM, "%s: permission denied: %s may not load, evict, verify or tune models "
			 "(admin = %s; see unweightd.conf(5))", what, p->who, c->admin.text);
}

int policy_attach(const struct uwd_config *c, const struct peer *p, const char *model,
		  struct uwerr *e)
{
	const struct uwd_model_acl *m = NULL;
	for (size_t i = 0; i < c->nattach_models && !m; i++)
		if (strcmp(c->attach_models[i].model, model) == 0)
			m = &c->attach_models[i];
	const struct acl *a = m ? &m->acl : &c->attach;
	if (acl_allows(a, p))
		return 0;
	return uwerr_set(e, EPERM, "attach %s: permission denied: %s may not attach it "
			 "(attach%s%s = %s; see unweightd.conf(5))", model, p->who, m ? "." : "",
			 m ? model : "", a->text);
}
