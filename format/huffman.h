/* huffman: length-limited canonical Huffman codes over a byte alphabet, for
 * the REST_EXPHUF exponent stream (docs/FORMAT.md, "Tensor payloads"). */
#ifndef UW_FORMAT_HUFFMAN_H
#define UW_FORMAT_HUFFMAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define HUF_MAX_LEN 12                  /* longest code, bits */
#define HUF_TABLE_SIZE (1u << HUF_MAX_LEN)
#define HUF_SYMS 256

/* A code as stored: the present symbols, strictly ascending, with their
 * lengths. A lone symbol has length 0 (the complete code of one symbol is
 * the empty string: it costs no bits). */
struct huf_code {
	int nsym;
	uint8_t sym[HUF_SYMS];
	uint8_t len[HUF_SYMS];
};

/* Optimal lengths of at most HUF_MAX_LEN bits (package-merge) for the
 * symbols with count > 0. Counts must sum to less than 2^59. */
void huf_lengths(const uint64_t count[HUF_SYMS], struct huf_code *c);

/* Canonical codes, by (length, symbol), MSB-first; len 0 for absent symbols. */
struct huf_enc {
	uint16_t code[HUF_SYMS];
	uint8_t len[HUF_SYMS];
};

/* Indexed by the next HUF_MAX_LEN bits of the stream: (length << 8) | symbol. */
struct huf_dec {
	uint16_t entry[HUF_TABLE_SIZE];
};

/* Both builders first check the code: 1..256 symbols strictly ascending,
 * lengths <= HUF_MAX_LEN, and Kraft sum exactly 1 (so every bit string
 * decodes). Anything else is -EBADMSG with the reason. */
int huf_build_enc(const struct huf_code *c, struct huf_enc *enc, struct uwerr *e);
int huf_build_dec(const struct huf_code *c, struct huf_dec *dec, struct uwerr *e);

#endif
