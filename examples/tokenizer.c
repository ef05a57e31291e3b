/* tokenizer: implementation of tokenizer.h. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples/tokenizer.h"

static int read_exact(FILE *f, void *buf, size_t len, const char *path,
		      const char *what, int i, struct uwerr *e)
{
	if (fread(buf, 1, len, f) == len)
		return 0;
	return uwerr_set(e, ferror(f) ? EIO : EINVAL, "tokenizer %s: token %d: %s: %s",
			 path, i, what, ferror(f) ? "read error" : "file too short");
}

int tok_load(const char *path, int n, struct tokenizer *t, struct uwerr *e)
{
	FILE *f = fopen(path, "rb");
	int32_t max_len, len;
	float score;
	int rc;

	memset(t, 0, sizeof(*t));
	if (!f)
		return uwerr_set(e, errno, "tokenizer %s: %s", path, strerror(errno));
	t->piece = calloc(n, sizeof(*t->piece));
	if (!t->piece) {
		rc = uwerr_set(e, ENOMEM, "tokenizer %s: out of memory", path);
		goto fail;
	}
	t->n = n;
	rc = read_exact(f, &max_len, sizeof(max_len), path, "max token length", -1, e);
	if (rc < 0)
		goto fail;
	if (max_len < 0 || max_len > 4096) {
		rc = uwerr_set(e, EINVAL, "tokenizer %s: max token length %d out of [0,4096]",
			       path, max_len);
		goto fail;
	}
	for (int i = 0; i < n; i++) {
		if ((rc = read_exact(f, &score, sizeof(score), path, "score", i, e)) < 0 ||
		    (rc = read_exact(f, &len, sizeof(len), path, "length", i, e)) < 0)
			goto fail;
		if (len < 0 || len > max_len) {
			rc = uwerr_set(e, EINVAL, "tokenizer %s: token %d: length %d out of [0,%d]",
				       path, i, len, max_len);
			goto fail;
		}
		t->piece[i] = malloc((size_t)len + 1);
		if (!t->piece[i]) {
			rc = uwerr_set(e, ENOMEM, "tokenizer %s: out of memory", path);
			goto fail;
		}
		if ((rc = read_exact(f, t->piece[i], len, path, "bytes", i, e)) < 0)
			goto fail;
		t->piece[i][len] = '\0';
	}
	if (fgetc(f) != EOF) {
		rc = uwerr_set(e, EINVAL, "tokenizer %s: bytes after the %d tokens "
			       "(a tokenizer for another vocabulary?)", path, n);
		goto fail;
	}
	for (int b = 0; b < 256; b++)
		t->bytes[b][0] = (char)b;
	fclose(f);
	return 0;
fail:
	fclose(f);
	tok_free(t);
	return rc;
}

void tok_free(struct tokenizer *t)
{
	for (int i = 0; t->piece && i < t->n; i++)
		free(t->piece[i]);
	free(t->piece);
	memset(t, 0, sizeof(*t));
}

const char *tok_decode(const struct tokenizer *t, int prev, int token)
{
	const char *p;
	unsigned char byte;

	if (token < 0 || token >= t->n)
		return "";
	p = t->piece[token];
	if (prev == TOK_BOS && p[0] == ' ')
		p++;
	if (sscanf(p, "<0x%02hhX>", &byte) == 1)
		p = t->bytes[byte];
	/* A lone control byte would garble a terminal; llama2.c drops it too. */
	if (p[0] && !p[1] && !isprint((unsigned char)p[0]) && !isspace((unsigned char)p[0]))
		return "";
	return p;
}
