/* beneath: open a path under a directory so that nothing in it leads
 * outside: not a "..", not an absolute symlink, not a symlink whose target
 * climbs out, not a /proc magic link. Symlinks that stay inside are
 * followed (a Hugging Face cache links snapshots to blobs beside them).
 * openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS does it in the
 * kernel; where that is missing (Linux before 5.6, or a seccomp filter that
 * refuses it) beneath_walk does the same one component at a time. */
#ifndef UWD_BENEATH_H
#define UWD_BENEATH_H

/* An fd of rel (relative) under dirfd, opened with flags | O_CLOEXEC, or a
 * negative errno: -EXDEV when the path leads outside dirfd. */
int beneath_open(int dirfd, const char *rel, int flags);

/* beneath_open without openat2: every component opened O_PATH |
 * O_NOFOLLOW from the one before, ".." taken from the directories already
 * held (never from the file system, so a directory renamed meanwhile
 * cannot lead out), and symlinks read and spliced in, at most 40. Its own
 * entry point so that tests run it on kernels that have openat2. */
int beneath_walk(int dirfd, const char *rel, int flags);

#endif
