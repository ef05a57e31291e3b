/* gen_llama: write a synthetic checkpoint shaped like Llama-3.1-8B (vocab
 * 128256, hidden 4096, MLP 14336, 32 layers, 8 KV heads of 128): BF16
 * weights drawn from N(0, 0.02) (norm weights too: the shapes matter here,
 * not the model), as safetensors shards and a model.safetensors.index.json,
 * the way Hugging Face ships it. bench/load.sh loads it.
 *
 *   bench/uw-bench-gen-llama [--layers N] [--shards K] [--seed S] DIR
 *
 * 32 layers and 4 shards (the defaults) make 16.06 GB; fewer layers make a
 * smaller model of the same tensor shapes (embeddings and lm_head stay
 * 1.05 GB each). The weights are drawn on every CPU. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/parallel.h"
#include "format/safetensors.h"
#include "kernels/resident.h"
#include "tests/testutil.h"
#include "unweight.h"

#define VOCAB 128256
#define HIDDEN 4096
#define MLP 14336
#define KV 1024                 /* 8 KV heads x 128 */
#define PER_LAYER 9
#define MAX_SHARDS 64

struct gen {
	uint16_t *w;
	uint64_t seed;
};

/* Box-Muller, two normals per pair of uniforms; each 64 Ki-weight block
 * has its own stream, so the bytes do not depend on the thread count. */
static void gen_blocks(void *ctx, size_t begin, size_t end)
{
	struct gen *g = ctx;
	for (size_t b = begin; b < end; b++) {
		uint64_t s = g->seed ^ (b * 0xd1b54a32d192ed03ull);
		uint16_t *w = g->w + b * 65536;
		for (size_t i = 0; i < 65536; i += 2) {
			double u1 = ((double)(tu_rand(&s) >> 11) + 1.0) * 0x1p-53;
			double u2 = (double)(tu_rand(&s) >> 11) * 0x1p-53;
			double r = 0.02 * sqrt(-2.0 * log(u1));
			w[i] = f32_to_bf16((float)(r * cos(2 * M_PI * u2)));
			w[i + 1] = f32_to_bf16((float)(r * sin(2 * M_PI * u2)));
		}
	}
}

static void die(const char *what, const struct uwerr *e)
{
	fprintf(stderr, "uw-bench-gen-llama: %s%s%s\n", what, e ? ": " : "", e ? e->msg : "");
	exit(1);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"layers", required_argument, NULL, 'L'},
		{"shards", required_argument, NULL, 'k'},
		{"seed", required_argument, NULL, 's'},
		{0},
	};
	int layers = 32, nshards = 4, o;
	uint64_t seed = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'L': layers = atoi(optarg); break;
		case 'k': nshards = atoi(optarg); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		default: optind = argc + 1;
		}
	}
	if (optind != argc - 1 || layers < 1 || layers > 1000 || nshards < 1 ||
	    nshards > MAX_SHARDS) {
		fprintf(stderr, "usage: uw-bench-gen-llama [--layers N] [--shards K] [--seed S] DIR\n");
		return 2;
	}
	const char *dir = argv[optind];
	if (mkdir(dir, 0755) && errno != EEXIST)
		die(dir, NULL);

	/* The tensors in checkpoint order, names and shapes as in Llama. */
	size_t n = (size_t)layers * PER_LAYER + 3;
	struct st_out_tensor *t = calloc(n, sizeof(*t));
	char (*names)[96] = calloc(n, sizeof(*names));
	if (!t || !names)
		die("out of memory", NULL);
	static const struct { const char *name; uint64_t r, c; } layer[PER_LAYER] = {
		{"input_layernorm.weight", HIDDEN, 0},
		{"self_attn.q_proj.weight", HIDDEN, HIDDEN},
		{"self_attn.k_proj.weight", KV, HIDDEN},
		{"self_attn.v_proj.weight", KV, HIDDEN},
		{"self_attn.o_proj.weight", HIDDEN, HIDDEN},
		{"post_attention_layernorm.weight", HIDDEN, 0},
		{"mlp.gate_proj.weight", MLP, HIDDEN},
		{"mlp.up_proj.weight", MLP, HIDDEN},
		{"mlp.down_proj.weight", HIDDEN, MLP},
	};
	size_t k = 0;
	snprintf(names[k], sizeof(names[k]), "model.embed_tokens.weight");
	t[k++] = (struct st_out_tensor){.ndim = 2, .shape = {VOCAB, HIDDEN}};
	for (int l = 0; l < layers; l++)
		for (int i = 0; i < PER_LAYER; i++) {
			snprintf(names[k], sizeof(names[k]), "model.layers.%d.%s", l, layer[i].name);
			t[k++] = (struct st_out_tensor){.ndim = layer[i].c ? 2 : 1,
							.shape = {layer[i].r, layer[i].c}};
		}
	snprintf(names[k], sizeof(names[k]), "model.norm.weight");
	t[k++] = (struct st_out_tensor){.ndim = 1, .shape = {HIDDEN}};
	snprintf(names[k], sizeof(names[k]), "lm_head.weight");
	t[k++] = (struct st_out_tensor){.ndim = 2, .shape = {VOCAB, HIDDEN}};
	uint64_t total = 0, most = 0;
	for (size_t i = 0; i < n; i++) {
		t[i].name = names[i];
		t[i].dtype = UW_DTYPE_BF16;
		uint64_t b = t[i].shape[0] * (t[i].ndim == 2 ? t[i].shape[1] : 1) * 2;
		total += b;
		most = b > most ? b : most;
	}

	/* Shards of near-equal size, in order; each tensor drawn in blocks of
	 * 64 Ki weights (rounded up: buf holds the largest tensor, far more). */
	uint16_t *buf = malloc(most);
	size_t first[MAX_SHARDS + 1] = {0};
	int s = 0;
	uint64_t acc = 0;
	if (!buf)
		die("out of memory", NULL);
	for (size_t i = 0; i < n; i++) {
		uint64_t b = t[i].shape[0] * (t[i].ndim == 2 ? t[i].shape[1] : 1) * 2;
		if (acc && acc + b / 2 > total / (uint64_t)nshards * (uint64_t)(s + 1) &&
		    s + 1 < nshards)
			first[++s] = i;
		acc += b;
	}
	nshards = s + 1;
	first[nshards] = n;
	char path[4096], idx[4096];
	snprintf(idx, sizeof(idx), "%s/model.safetensors.index.json", dir);
	FILE *ix = fopen(idx, "w");
	if (!ix)
		die(idx, NULL);
	fprintf(ix, "{\"metadata\":{\"total_size\":%llu},\"weight_map\":{",
		(unsigned long long)total);
	uint64_t block = 0;
	for (int sh = 0; sh < nshards; sh++) {
		struct uwerr e = {0};
		struct st_writer *w;
		char file[128];
		snprintf(file, sizeof(file), "model-%05d-of-%05d.safetensors", sh + 1, nshards);
		snprintf(path, sizeof(path), "%s/%s", dir, file);
		size_t cnt = first[sh + 1] - first[sh];
		struct st_meta meta = {"format", "pt"};
		if (st_writer_open(path, t + first[sh], cnt, &meta, 1, NULL, 0, &w, &e))
			die(path, &e);
		for (size_t i = 0; i < cnt; i++) {
			const struct st_out_tensor *x = &t[first[sh] + i];
			uint64_t b = x->end - x->begin;
			struct gen g = {buf, seed + block * 0x632be59bd9b4e019ull};
			size_t nb = (size_t)((b / 2 + 65535) / 65536);
			par_for(nb, 0, gen_blocks, &g);
			block += nb;
			if (st_writer_put(w, i, buf, &e))
				die(path, &e);
			fprintf(ix, "%s\"%s\":\"%s\"", first[sh] + i ? "," : "", x->name, file);
		}
		if (st_writer_close(w, 1, &e))
			die(path, &e);
		printf("%s: %zu tensors\n", path, cnt);
	}
	fprintf(ix, "}}\n");
	if (fclose(ix))
		die(idx, NULL);
	printf("%s: %zu tensors, %llu bytes in %d shards\n", idx, n, (unsigned long long)total,
	       nshards);
	free(buf);
	free(t);
	free(names);
	return 0;
}
