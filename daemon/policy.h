/* policy: who may do what. Every peer is identified when it connects, by
 * the kernel (SO_PEERCRED: uid, gid, pid; SO_PEERGROUPS: its supplementary
 * groups), never by anything it says. Admin requests (load, evict, verify, tune) need the
 * `admin` list; attach needs the model's `attach.NAME` list, else the
 * default `attach` list. unweightd.conf(5) gives the syntax and defaults. */
#ifndef UWD_POLICY_H
#define UWD_POLICY_H

#include <stddef.h>
#include <sys/types.h>

#include "common/err.h"

#define PEER_MAX_GROUPS 64

struct peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	gid_t groups[PEER_MAX_GROUPS];   /* supplementary, as SO_PEERGROUPS gives them */
	int ngroups;
	char who[80];                    /* "uid 1000 gid 1000 pid 4242", for the log */
};

/* A list of users and groups: "*", user names or uids, "@group" names or
 * gids, separated by spaces or commas. */
struct acl {
	int any;                         /* "*" */
	uid_t *uids;
	size_t nuids;
	gid_t *gids;
	size_t ngids;
	char *text;                      /* as written, for refusals */
};

/* The peer of a connected socket. Fails only when the kernel cannot say
 * who it is (then nothing may be done for it). */
int peer_identify(int fd, struct peer *p, struct uwerr *e);

/* A user name or uid (a group name or gid): 0, or a negative errno with
 * why naming it. */
int policy_uid(const char *name, uid_t *out, char *why, size_t whylen);
int policy_gid(const char *name, gid_t *out, char *why, size_t whylen);

/* Parse text into a (names resolved now); why gets the reason on error. */
int acl_parse(const char *text, struct acl *a, char *why, size_t whylen);
/* root and the daemon's own uid: the default admin list. */
int acl_default_admin(struct acl *a);
int acl_allows(const struct acl *a, const struct peer *p);
void acl_free(struct acl *a);

struct uwd_config;

/* 0 when p may load, evict, verify and tune, else -EPERM naming the peer,
 * what it asked (like "load llama") and the list that refused it. */
int policy_admin(const struct uwd_config *c, const struct peer *p, const char *what,
		 struct uwerr *e);
/* 0 when p may attach model, else -EPERM as above. */
int policy_attach(const struct uwd_config *c, const struct peer *p, const char *model,
		  struct uwerr *e);

#endif
