/* tokenizer: the llama2.c tokenizer file (tok512.bin), for decoding only. */
#ifndef UW_EXAMPLES_TOKENIZER_H
#define UW_EXAMPLES_TOKENIZER_H

#include "common/err.h"

#define TOK_BOS 1

struct tokenizer {
	int n;                 /* vocab size */
	char **piece;          /* [n] NUL-terminated pieces */
	char bytes[256][2];    /* the one-byte pieces that <0xXX> tokens stand for */
};

/* Load a llama2.c tokenizer file with exactly n tokens: int32 max token
 * length, then per token a float32 score, an int32 length and the bytes. */
int tok_load(const char *path, int n, struct tokenizer *t, struct uwerr *e);
void tok_free(struct tokenizer *t);

/* The text token stands for after prev, as llama2.c prints it: the leading
 * space is dropped after BOS, <0xXX> is that raw byte, and a lone byte that
 * is neither printable nor white space prints as nothing. */
const char *tok_decode(const struct tokenizer *t, int prev, int token);

#endif
