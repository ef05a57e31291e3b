/* huffman: package-merge code lengths, canonical codes and the decode table. */
#include "format/huffman.h"

#include <string.h>

/* Package-merge (the coin collector's problem): level HUF_MAX_LEN holds the
 * leaves by weight; each level above merges the leaves with the pairs of the
 * level below. The 2n - 2 cheapest items of the top level are the optimal
 * choice, and a leaf's code length is how many of the chosen items contain
 * it, level by level. */
struct pm_item {
	uint64_t w;
	int16_t leaf;       /* index into the sorted leaves, or -1 for a pair */
};

void huf_lengths(const uint64_t count[HUF_SYMS], struct huf_code *c)
{
	uint8_t order[HUF_SYMS];
	int n = 0;
	for (int s = 0; s < HUF_SYMS; s++)
		if (count[s])
			order[n++] = (uint8_t)s;
	memset(c->len, 0, sizeof(c->len));
	c->nsym = n;
	for (int i = 0; i < n; i++)
		c->sym[i] = order[i];
	if (n <= 1)
		return;          /* none, or a lone symbol of length 0 */
	/* by count, then symbol: insertion sort is plenty for 256 */
	for (int i = 1; i < n; i++) {
		uint8_t s = order[i];
		int j = i;
		for (; j > 0 && count[order[j - 1]] > count[s]; j--)
			order[j] = order[j - 1];
		order[j] = s;
	}

	struct pm_item list[HUF_MAX_LEN + 1][2 * HUF_SYMS];
	int size[HUF_MAX_LEN + 1];
	for (int i = 0; i < n; i++)
		list[HUF_MAX_LEN][i] = (struct pm_item){count[order[i]], (int16_t)i};
	size[HUF_MAX_LEN] = n;
	for (int lv = HUF_MAX_LEN - 1; lv >= 1; lv--) {
		const struct pm_item *below = list[lv + 1];
		int npair = size[lv + 1] / 2, i = 0, j = 0, k = 0;
		while (i < n || j < npair) {
			uint64_t pw = j < npair ? below[2 * j].w + below[2 * j + 1].w : 0;
			/* ties go to the leaf, so the result is deterministic */
			if (i < n && (j >= npair || count[order[i]] <= pw)) {
				list[lv][k++] = (struct pm_item){count[order[i]], (int16_t)i};
				i++;
			} else {
				list[lv][k++] = (struct pm_item){pw, -1};
				j++;
			}
		}
		size[lv] = k;
	}
	uint8_t len[HUF_SYMS] = {0};
	int take = 2 * n - 2;
	for (int lv = 1; lv <= HUF_MAX_LEN && take > 0; lv++) {
		int pairs = 0;
		for (int i = 0; i < take; i++) {
			if (list[lv][i].leaf >= 0)
				len[list[lv][i].leaf]++;
			else
				pairs++;
		}
		take = 2 * pairs;
	}
	uint8_t by_sym[HUF_SYMS];
	for (int i = 0; i < n; i++)
		by_sym[order[i]] = len[i];
	for (int i = 0; i < n; i++)
		c->len[i] = by_sym[c->sym[i]];
}

static int huf_check(const struct huf_code *c, struct uwerr *e)
{
	if (c->nsym < 1 || c->nsym > HUF_SYMS)
		return uwerr_set(e, EBADMSG, "huffman table: %d symbols (want 1..%d)",
				 c->nsym, HUF_SYMS);
	uint64_t kraft = 0;     /* in units of 2^-HUF_MAX_LEN */
	for (int i = 0; i < c->nsym; i++) {
		if (i > 0 && c->sym[i] <= c->sym[i - 1])
			return uwerr_set(e, EBADMSG, "huffman table: symbol %u after %u (want strictly ascending)",
					 c->sym[i], c->sym[i - 1]);
		if (c->len[i] > HUF_MAX_LEN)
			return uwerr_set(e, EBADMSG, "huffman table: symbol %u has length %u (max %d)",
					 c->sym[i], c->len[i], HUF_MAX_LEN);
		kraft += 1ull << (HUF_MAX_LEN - c->len[i]);
	}
	if (kraft != HUF_TABLE_SIZE)
		return uwerr_set(e, EBADMSG, "huffman table: Kraft sum %llu/%u (want exactly 1: the code must be complete)",
				 (unsigned long long)kraft, HUF_TABLE_SIZE);
	return 0;
}

/* Canonical codes: those of each length are consecutive, shorter codes
 * first, ties by symbol. code[i] belongs to c->sym[i]. */
static void huf_canonical(const struct huf_code *c, uint16_t code[HUF_SYMS])
{
	unsigned next = 0, prev = 0;
	for (unsigned l = 0; l <= HUF_MAX_LEN; l++)
		for (int i = 0; i < c->nsym; i++) {
			if (c->len[i] != l)
				continue;
			next <<= l - prev;
			prev = l;
			code[i] = (uint16_t)next++;
		}
}

int huf_build_enc(const struct huf_code *c, struct huf_enc *enc, struct uwerr *e)
{
	uint16_t code[HUF_SYMS];
	int rc = huf_check(c, e);
	if (rc < 0)
		return rc;
	huf_canonical(c, code);
	memset(enc, 0, sizeof(*enc));
	for (int i = 0; i < c->nsym; i++) {
		enc->code[c->sym[i]] = code[i];
		enc->len[c->sym[i]] = c->len[i];
	}
	return 0;
}

int huf_build_dec(const struct huf_code *c, struct huf_dec *dec, struct uwerr *e)
{
	uint16_t code[HUF_SYMS];
	int rc = huf_check(c, e);
	if (rc < 0)
		return rc;
	huf_canonical(c, code);
	/* A complete code's entries tile the table exactly. */
	for (int i = 0; i < c->nsym; i++) {
		unsigned shift = HUF_MAX_LEN - c->len[i];
		uint16_t v = (uint16_t)(c->len[i] << 8 | c->sym[i]);
		for (unsigned k = 0; k < 1u << shift; k++)
			dec->entry[((unsigned)code[i] << shift) + k] = v;
	}
	return 0;
}
