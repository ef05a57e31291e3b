/* check_tunecache: the tune cache's text format (each malformed field
 * refused with its line and field named, other format versions ignored,
 * comments and blank lines), the merge and atomic write (mode, no
 * temporary left, a malformed old file replaced, refusals naming the
 * path), the directory choice ($UW_TUNE_DIR) and the lookup table (buckets,
 * other devices' lines unused). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "kernels/tunecache.h"
#include "tests/testutil.h"

#define HDR "unweight-tune 1\n"
#define H200 "NVIDIA_H200 sm_90 132 0.1.0+uwk1"

static const struct tune_key h200 = {"NVIDIA_H200", 90, 132, "0.1.0+uwk1"};

static int parse(const char *text, struct tune_set *s, unsigned *ver, struct uwerr *e)
{
	return tune_parse(text, strlen(text), "t.tune", s, ver, e);
}

START_TEST(good_file)
{
	static const char text[] =
		"# a comment before the header\n\n"
		HDR
		"   # an indented comment\n"
		H200 " 14336x4096 b1 fused:4x2/1/2 35.90 36.10\n"
		H200 "\t14336x4096\tb64 gemm 108.3 108.3\r\n"
		H200 " 28672x8192 b16 wg 126.1 145.6\n"
		H200 " 14336x4096 b128 wg 210.5 233.0\n"
		H200 " 14336x4096 b1024 gemm 1310.2 1310.2\n"
		"\n"
		"NVIDIA_H100_80GB_HBM3 sm_90 132 0.1.0+uwk1 4096x14336 b16 fused:4x1/8/1 44.5 44.5";
	struct tune_set s = {0};
	struct uwerr e = {0};
	unsigned ver;
	ck_assert_msg(parse(text, &s, &ver, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(ver, 1);
	ck_assert_uint_eq(s.n, 6);
	const struct tune_entry *a = &s.e[0];
	ck_assert_str_eq(a->key.device, "NVIDIA_H200");
	ck_assert_uint_eq(a->key.cc, 90);
	ck_assert_uint_eq(a->key.sms, 132);
	ck_assert_str_eq(a->key.lib, "0.1.0+uwk1");
	ck_assert(a->rows == 14336 && a->cols == 4096 && a->bucket == 1);
	ck_assert(a->c.pipe == TUNE_PIPE_FUSED && a->c.wm == 4 && a->c.wk == 2 && a->c.ks == 1 &&
		  a->c.pf == 2);
	ck_assert(a->us == 35.90 && a->default_us == 36.10);
	ck_assert(s.e[1].c.pipe == TUNE_PIPE_GEMM && s.e[1].bucket == 64);
	ck_assert(s.e[2].c.pipe == TUNE_PIPE_WG && s.e[2].rows == 28672 && s.e[2].bucket == 16);
	ck_assert(s.e[3].c.pipe == TUNE_PIPE_WG && s.e[3].bucket == 128);
	ck_assert(s.e[4].c.pipe == TUNE_PIPE_GEMM && s.e[4].bucket == 1024);
	ck_assert_str_eq(s.e[5].key.device, "NVIDIA_H100_80GB_HBM3");
	ck_assert_ptr_eq(tune_set_find(&s, &h200, 14336, 4096, 64), &s.e[1]);
	ck_assert_ptr_eq(tune_set_find(&s, &h200, 14336, 4096, 1024), &s.e[4]);
	ck_assert_ptr_null(tune_set_find(&s, &h200, 14336, 4096, 2));
	ck_assert_ptr_null(tune_set_find(&s, &h200, 14336, 4096, 256));

	/* what the writer prints reads back the same */
	char *out = tune_format(&s);
	struct tune_set t = {0};
	ck_assert_msg(parse(out, &t, NULL, &e) == 0, "%s\n%s", e.msg, out);
	ck_assert_uint_eq(t.n, s.n);
	for (size_t i = 0; i < s.n; i++)
		ck_assert(tune_key_eq(&t.e[i].key, &s.e[i].key) && t.e[i].rows == s.e[i].rows &&
			  t.e[i].cols == s.e[i].cols && t.e[i].bucket == s.e[i].bucket &&
			  !memcmp(&t.e[i].c, &s.e[i].c, sizeof(t.e[i].c)) &&
			  t.e[i].us == s.e[i].us && t.e[i].default_us == s.e[i].default_us);
	free(out);
	tune_set_free(&t);

	/* a later line for the same key, shape and bucket replaces the earlier */
	ck_assert(parse(HDR H200 " 8x8 b4 gemm 1 1\n" H200 " 8x8 b4 fused:1x8/2/1 0.5 1\n", &t,
			NULL, &e) == 0);
	ck_assert(t.n == 1 && t.e[0].c.pipe == TUNE_PIPE_FUSED && t.e[0].c.ks == 2);
	tune_set_free(&t);
	/* an empty file is an empty cache */
	ck_assert(parse("", &t, &ver, &e) == 0 && t.n == 0 && ver == 0);
	tune_set_free(&s);
}
END_TEST

START_TEST(other_version)
{
	struct tune_set s = {0};
	struct uwerr e = {0};
	unsigned ver;
	/* a newer format, whatever its lines look like, adds nothing */
	ck_assert_msg(parse("unweight-tune 2\nanything at all, in a layout of its own\n", &s, &ver,
			    &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(ver, 2);
	ck_assert_uint_eq(s.n, 0);
	/* and leaves what s held */
	ck_assert(parse(HDR H200 " 8x8 b4 gemm 1 1\n", &s, NULL, &e) == 0 && s.n == 1);
	ck_assert(parse("unweight-tune 7\n" H200 " 9x9 b4 gemm 1 1\n", &s, &ver, &e) == 0);
	ck_assert(s.n == 1 && ver == 7);
	tune_set_free(&s);
}
END_TEST

/* Each malformed file: refused, s untouched, the message naming the line
 * and what is wrong with it. */
START_TEST(malformed)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{"unweight-tune\n", "t.tune:1: not a tune cache"},
		{"unweight-tune x\n", "t.tune:1: not a tune cache"},
		{"# only a comment\n", "no 'unweight-tune' line"},
		{H200 " 8x8 b4 gemm 1 1\n", "t.tune:1: not a tune cache"},
		{HDR H200 " 8x8 b4 gemm 1\n", "t.tune:2: 8 fields, want 9"},
		{HDR H200 " 8x8 b4 gemm 1 1 1\n", "t.tune:2: more than 9 fields"},
		{HDR "NVIDIA/H200 sm_90 132 L 8x8 b4 gemm 1 1\n", "field 1 (device) 'NVIDIA/H200'"},
		{HDR "D sm90 132 L 8x8 b4 gemm 1 1\n", "field 2 (compute capability) 'sm90'"},
		{HDR "D sm_9 132 L 8x8 b4 gemm 1 1\n", "field 2 (compute capability)"},
		{HDR "D sm_90 0 L 8x8 b4 gemm 1 1\n", "field 3 (multiprocessors) '0'"},
		{HDR "D sm_90 -4 L 8x8 b4 gemm 1 1\n", "field 3 (multiprocessors)"},
		{HDR "D sm_90 132 L/1 8x8 b4 gemm 1 1\n", "field 4 (library) 'L/1'"},
		{HDR "D sm_90 132 L 8X8 b4 gemm 1 1\n", "field 5 (shape) '8X8'"},
		{HDR "D sm_90 132 L 0x8 b4 gemm 1 1\n", "field 5 (shape) '0x8'"},
		{HDR "D sm_90 132 L 8x2147483648 b4 gemm 1 1\n", "field 5 (shape)"},
		{HDR "D sm_90 132 L 8x8x8 b4 gemm 1 1\n", "field 5 (shape)"},
		{HDR "D sm_90 132 L 8x8 b3 gemm 1 1\n", "field 6 (bucket) 'b3'"},
		{HDR "D sm_90 132 L 8x8 b96 gemm 1 1\n", "field 6 (bucket) 'b96'"},
		{HDR "D sm_90 132 L 8x8 b2048 gemm 1 1\n", "field 6 (bucket) 'b2048'"},
		{HDR "D sm_90 132 L 8x8 b0 gemm 1 1\n", "field 6 (bucket) 'b0'"},
		{HDR "D sm_90 132 L 8x8 4 gemm 1 1\n", "field 6 (bucket) '4'"},
		{HDR "D sm_90 132 L 8x8 b4 cublas 1 1\n", "field 7 (choice) 'cublas'"},
		{HDR "D sm_90 132 L 8x8 b4 fused:4x2/1 1 1\n", "field 7 (choice)"},
		{HDR "D sm_90 132 L 8x8 b4 fused:8x8/1/1 1 1\n", "field 7 (choice)"},
		{HDR "D sm_90 132 L 8x8 b4 fused:4x2/0/1 1 1\n", "field 7 (choice)"},
		{HDR "D sm_90 132 L 8x8 b4 fused:4x2/1/9 1 1\n", "field 7 (choice)"},
		{HDR "D sm_90 132 L 8x8 b4 fused:4x2/1/1x 1 1\n", "field 7 (choice)"},
		{HDR "D sm_90 132 L 8x8 b4 gemm -1 1\n", "field 8 (tuned time) '-1'"},
		{HDR "D sm_90 132 L 8x8 b4 gemm 1us 1\n", "field 8 (tuned time)"},
		{HDR "D sm_90 132 L 8x8 b4 gemm 1 nan\n", "field 9 (default time) 'nan'"},
		{HDR "D sm_90 132 L 8x8 b4 gemm 1 1e999\n", "field 9 (default time)"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tune_set s = {0};
		struct uwerr e = {0};
		ck_assert(parse(HDR H200 " 8x8 b4 gemm 1 1\n", &s, NULL, &e) == 0);
		int rc = parse(cases[i].text, &s, NULL, &e);
		ck_assert_msg(rc == -EINVAL, "case %zu: %d", i, rc);
		ck_assert_msg(strstr(e.msg, cases[i].want), "case %zu: \"%s\" lacks \"%s\"", i, e.msg,
			      cases[i].want);
		ck_assert_msg(s.n == 1 && s.e[0].rows == 8, "case %zu: the set changed", i);
		tune_set_free(&s);
	}
	/* a NUL byte, a line over the limit */
	struct tune_set s = {0};
	struct uwerr e = {0};
	char nul[] = HDR "D sm_90 132 L 8x8 b4 gemm 1 1\n";
	nul[20] = '\0';
	ck_assert_int_eq(tune_parse(nul, sizeof(nul) - 1, "t.tune", &s, NULL, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "NUL"), "%s", e.msg);
	char *longl = malloc(4096);
	snprintf(longl, 4096, HDR "# %02000d\n", 0);
	ck_assert_int_eq(parse(longl, &s, NULL, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "t.tune:2: line longer than"), "%s", e.msg);
	free(longl);
	ck_assert_uint_eq(s.n, 0);
}
END_TEST

START_TEST(buckets_and_tokens)
{
	static const size_t batch[] = {0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 33, 64, 65, 128, 129,
				       256, 257, 512, 513, 1000, 1024, 1025, 4096};
	static const unsigned want[] = {0, 1, 2, 4, 4, 8, 8, 16, 16, 32, 64, 64, 128, 128, 256,
					256, 512, 512, 1024, 1024, 1024, 0, 0};
	for (size_t i = 0; i < sizeof(batch) / sizeof(batch[0]); i++)
		ck_assert_msg(tune_bucket(batch[i]) == want[i], "batch %zu: bucket %u, want %u",
			      batch[i], tune_bucket(batch[i]), want[i]);
	char t[TUNE_MAX_DEVICE];
	tune_device_token("NVIDIA H100 80GB HBM3", t);
	ck_assert_str_eq(t, "NVIDIA_H100_80GB_HBM3");
	tune_device_token("NVIDIA H100 MIG 1g.10gb/x", t);
	ck_assert_str_eq(t, "NVIDIA_H100_MIG_1g.10gb_x");
	tune_device_token("", t);
	ck_assert_str_eq(t, "unknown");
	char lng[200];
	memset(lng, 'a', sizeof(lng) - 1);
	lng[sizeof(lng) - 1] = '\0';
	tune_device_token(lng, t);
	ck_assert_uint_eq(strlen(t), TUNE_MAX_DEVICE - 1);
	/* what the token function writes, the parser takes */
	char line[256];
	snprintf(line, sizeof(line), HDR "%s sm_90 1 L 1x1 b1 gemm 0 0\n", t);
	struct tune_set s = {0};
	struct uwerr e = {0};
	ck_assert_msg(parse(line, &s, NULL, &e) == 0, "%s", e.msg);
	tune_set_free(&s);

	ck_assert_str_eq(tune_dir("/x"), "/x");
	unsetenv("UW_TUNE_DIR");
	ck_assert_str_eq(tune_dir(NULL), TUNE_DIR_DEFAULT);
	ck_assert_str_eq(tune_dir(""), TUNE_DIR_DEFAULT);
	setenv("UW_TUNE_DIR", "/y", 1);
	ck_assert_str_eq(tune_dir(NULL), "/y");
	ck_assert_str_eq(tune_dir("/x"), "/x");
	setenv("UW_TUNE_DIR", "", 1);
	ck_assert_ptr_null(tune_dir(NULL));
	unsetenv("UW_TUNE_DIR");
}
END_TEST

static int only_fused(const struct tune_entry *en)
{
	return en->c.pipe == TUNE_PIPE_FUSED;
}

/* As the CUDA library's: no fused choice above its batches. */
static int fused_to_64(const struct tune_entry *en)
{
	return en->c.pipe != TUNE_PIPE_FUSED || en->bucket <= 64;
}

START_TEST(table)
{
	struct tune_set s = {0};
	struct uwerr e = {0};
	ck_assert(parse(HDR
			H200 " 14336x4096 b1 fused:4x2/1/2 1 1\n"
			H200 " 14336x4096 b16 fused:4x1/2/2 1 1\n"
			H200 " 14336x4096 b64 gemm 1 1\n"
			H200 " 4096x14336 b1 fused:1x8/1/1 1 1\n"
			H200 " 14336x4096 b256 wg 1 1\n"
			H200 " 14336x4096 b1024 gemm 1 1\n"
			H200 " 4096x14336 b128 fused:1x8/1/1 1 1\n"
			"NVIDIA_H100 sm_90 132 0.1.0+uwk1 14336x4096 b2 gemm 1 1\n"
			"NVIDIA_H200 sm_90 132 0.1.0+uwk2 14336x4096 b2 gemm 1 1\n"
			"NVIDIA_H200 sm_90 66 0.1.0+uwk1 14336x4096 b2 gemm 1 1\n",
			&s, NULL, &e) == 0);
	struct tune_table *t;
	ck_assert(tune_table_build(&s, &h200, NULL, &t, &e) == 0);
	ck_assert_uint_eq(tune_table_size(t), 7);
	const struct tune_choice *c = tune_table_find(t, 14336, 4096, 1);
	ck_assert(c && c->wm == 4 && c->wk == 2 && c->ks == 1 && c->pf == 2);
	for (size_t b = 9; b <= 16; b++) {
		c = tune_table_find(t, 14336, 4096, b);
		ck_assert_msg(c && c->wm == 4 && c->wk == 1, "batch %zu", b);
	}
	ck_assert((c = tune_table_find(t, 14336, 4096, 33)) && c->pipe == TUNE_PIPE_GEMM);
	ck_assert((c = tune_table_find(t, 4096, 14336, 1)) && c->wm == 1 && c->wk == 8);
	/* above the fused kernel's batches: the buckets to 1024 (any choice:
	 * keep, below, drops what cannot run) */
	for (size_t b = 129; b <= 256; b++) {
		c = tune_table_find(t, 14336, 4096, b);
		ck_assert_msg(c && c->pipe == TUNE_PIPE_WG, "batch %zu", b);
	}
	ck_assert((c = tune_table_find(t, 14336, 4096, 513)) && c->pipe == TUNE_PIPE_GEMM);
	ck_assert((c = tune_table_find(t, 14336, 4096, 1024)) && c->pipe == TUNE_PIPE_GEMM);
	ck_assert((c = tune_table_find(t, 4096, 14336, 65)) && c->pipe == TUNE_PIPE_FUSED);
	/* no entry: batch 2 here (only other keys have it), buckets 128 and 512,
	 * past 1024, other shapes */
	ck_assert_ptr_null(tune_table_find(t, 14336, 4096, 2));
	ck_assert_ptr_null(tune_table_find(t, 14336, 4096, 65));
	ck_assert_ptr_null(tune_table_find(t, 14336, 4096, 128));
	ck_assert_ptr_null(tune_table_find(t, 14336, 4096, 257));
	ck_assert_ptr_null(tune_table_find(t, 14336, 4096, 1025));
	ck_assert_ptr_null(tune_table_find(t, 14336, 4095, 1));
	ck_assert_ptr_null(tune_table_find(t, 4096, 4096, 1));
	ck_assert_ptr_null(tune_table_find(t, (1ull << 32) + 14336, 4096, 1));
	ck_assert_ptr_null(tune_table_find(t, 14336, 4096, 0));
	tune_table_free(t);
	/* keep drops what the kernels cannot run */
	ck_assert(tune_table_build(&s, &h200, only_fused, &t, &e) == 0);
	ck_assert_uint_eq(tune_table_size(t), 4);
	ck_assert_ptr_null(tune_table_find(t, 14336, 4096, 64));
	ck_assert_ptr_null(tune_table_find(t, 14336, 4096, 256));
	tune_table_free(t);
	/* by its bucket too */
	ck_assert(tune_table_build(&s, &h200, fused_to_64, &t, &e) == 0);
	ck_assert_uint_eq(tune_table_size(t), 6);
	ck_assert_ptr_null(tune_table_find(t, 4096, 14336, 128));
	ck_assert((c = tune_table_find(t, 4096, 14336, 1)) && c->pipe == TUNE_PIPE_FUSED);
	ck_assert((c = tune_table_find(t, 14336, 4096, 256)) && c->pipe == TUNE_PIPE_WG);
	tune_table_free(t);
	ck_assert_ptr_null(tune_table_find(NULL, 14336, 4096, 1));
	tune_table_free(NULL);

	/* many entries: every one found */
	struct tune_set big = {0};
	for (uint32_t r = 1; r <= 300; r++)
		for (unsigned b = 1; b <= TUNE_MAX_BUCKET; b *= 2) {
			struct tune_entry en = {.key = h200, .rows = r, .cols = 7 * r, .bucket = b,
						.c = {TUNE_PIPE_FUSED, 1, 8, (int)r, (int)(b % 2 + 1)}};
			ck_assert(tune_set_put(&big, &en, &e) == 0);
		}
	ck_assert(tune_table_build(&big, &h200, NULL, &t, &e) == 0);
	ck_assert_uint_eq(tune_table_size(t), 300 * 11);
	for (uint32_t r = 1; r <= 300; r++)
		for (unsigned b = 1; b <= TUNE_MAX_BUCKET; b *= 2) {
			c = tune_table_find(t, r, 7 * r, b);
			ck_assert_msg(c && c->ks == (int)r && c->pf == (int)(b % 2 + 1), "%u b%u", r, b);
		}
	tune_table_free(t);
	tune_set_free(&big);
	tune_set_free(&s);
}
END_TEST

static char *path_in(const char *dir, const char *name)
{
	char *p = malloc(strlen(dir) + strlen(name) + 2);
	sprintf(p, "%s/%s", dir, name);
	return p;
}

/* Entries other than the cache itself in dir. */
static int others_in(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	for (struct dirent *de; (de = readdir(d));)
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		     strcmp(de->d_name, TUNE_FILE_NAME);
	closedir(d);
	return n;
}

START_TEST(merge_write)
{
	char *dir = tu_tmpdir(), *file = path_in(dir, TUNE_FILE_NAME);
	struct tune_set a = {0}, got = {0};
	struct uwerr e = {0}, note = {0};
	unsigned ver;
	int fds = tu_count_fds();
	umask(077);   /* as under the systemd unit: the file must be 0644 anyway */

	/* no file yet: an empty cache */
	ck_assert(tune_read(dir, &got, &ver, &e) == 0 && got.n == 0 && ver == 0);
	ck_assert(parse(HDR H200 " 8x8 b4 gemm 1 1\n"
			"OTHER sm_80 108 0.1.0+uwk1 8x8 b4 fused:2x2/1/1 2 2\n", &a, NULL, &e) == 0);
	ck_assert_msg(tune_merge_write(dir, &a, &note, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(note.code, 0);
	struct stat st;
	ck_assert(stat(file, &st) == 0 && (st.st_mode & 0777) == 0644);
	ck_assert_int_eq(others_in(dir), 0);
	ck_assert(tune_read(dir, &got, &ver, &e) == 0 && got.n == 2 && ver == 1);
	tune_set_free(&got);

	/* a second merge replaces this key's line and keeps the other device's */
	struct tune_set b = {0};
	ck_assert(parse(HDR H200 " 8x8 b4 fused:1x8/3/2 0.5 1\n" H200 " 16x8 b1 gemm 3 3\n", &b,
			NULL, &e) == 0);
	ck_assert_msg(tune_merge_write(dir, &b, &note, &e) == 0, "%s", e.msg);
	ck_assert(tune_read(dir, &got, NULL, &e) == 0 && got.n == 3);
	const struct tune_entry *en = tune_set_find(&got, &h200, 8, 8, 4);
	ck_assert(en && en->c.pipe == TUNE_PIPE_FUSED && en->c.ks == 3);
	ck_assert_str_eq(got.e[1].key.device, "OTHER");
	ck_assert_ptr_nonnull(tune_set_find(&got, &h200, 16, 8, 1));
	tune_set_free(&got);
	ck_assert_int_eq(others_in(dir), 0);

	/* a malformed file is replaced, and the note says why */
	ck_assert(tu_write_file(file, "garbage\n", 8) == 0);
	ck_assert_msg(tune_merge_write(dir, &b, &note, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(note.code, EINVAL);
	ck_assert_msg(strstr(note.msg, "not a tune cache") && strstr(note.msg, "replaced"), "%s",
		      note.msg);
	ck_assert(tune_read(dir, &got, NULL, &e) == 0 && got.n == 2);
	tune_set_free(&got);
	/* so is one of another version */
	ck_assert(tu_write_file(file, "unweight-tune 9\n", 16) == 0);
	ck_assert(tune_merge_write(dir, &a, &note, &e) == 0);
	ck_assert_msg(note.code && strstr(note.msg, "format version 9"), "%s", note.msg);
	ck_assert(tune_read(dir, &got, &ver, &e) == 0 && got.n == 2 && ver == 1);
	tune_set_free(&got);

	/* a reader of a malformed file: refused with the path and line */
	ck_assert(tu_write_file(file, HDR "x\n", strlen(HDR "x\n")) == 0);
	ck_assert_int_eq(tune_read(dir, &got, NULL, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, file) && strstr(e.msg, ":2:"), "%s", e.msg);

	/* directories that do not exist or cannot be written: the path named */
	char *missing = path_in(dir, "no/such");
	ck_assert(tune_merge_write(missing, &a, &note, &e) == -ENOENT);
	ck_assert_msg(strstr(e.msg, missing), "%s", e.msg);
	if (geteuid() != 0) {
		chmod(dir, 0555);
		int rc = tune_merge_write(dir, &a, &note, &e);
		ck_assert_msg(rc == -EACCES && strstr(e.msg, dir), "%d %s", rc, e.msg);
		chmod(dir, 0755);
	}
	ck_assert_int_eq(others_in(dir), 0);
	ck_assert_int_eq(tu_count_fds(), fds);
	free(missing);
	tune_set_free(&a);
	tune_set_free(&b);
	free(file);
	tu_rmtree(dir);
	free(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("tunecache");
	TCase *tc = tu_tcase(s, "core", 60);
	tcase_add_test(tc, good_file);
	tcase_add_test(tc, other_version);
	tcase_add_test(tc, malformed);
	tcase_add_test(tc, buckets_and_tokens);
	tcase_add_test(tc, table);
	tcase_add_test(tc, merge_write);
	return tu_run(s);
}
