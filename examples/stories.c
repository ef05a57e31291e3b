/* uw-stories: the example worker. It runs the llama2.c stories260K model
 * greedily from BOS and prints the story, with every linear layer's matmul
 * going through uw_matmul on weights attached from unweightd; with
 * --reference it runs the same forward pass straight from the safetensors
 * file instead, to check the daemon against. Needs a daemon with the model
 * loaded (examples/run-demo.sh does all of it):
 *
 *   unweightctl load stories260K data/stories260K.safetensors --wait
 *   uw-stories --model stories260K --steps 256
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "examples/llama.h"
#include "examples/tokenizer.h"
#include "examples/weights.h"
#include "unweight.h"

#ifndef UW_DATADIR
#define UW_DATADIR "data"
#endif

/* stories260K, from the header of its llama2.c checkpoint (data/README.md). */
static const struct llama_config stories260K = {
	.dim = 64, .hidden = 172, .n_layers = 5, .n_heads = 8, .n_kv_heads = 4,
	.vocab = 512, .seq_len = 512, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: uw-stories [--socket PATH] [--model NAME] [--steps N]\n"
		"                  [--reference FILE.safetensors [--float32]] [--tokenizer FILE]\n"
		"Print the greedy story of stories260K, its matmuls run by unweightd\n"
		"(or, with --reference, by a plain loop over the file).\n"
		"  --socket PATH      daemon socket (default $UNWEIGHT_SOCKET, else %s)\n"
		"  --model NAME       model name in the daemon (default stories260K)\n"
		"  --steps N          tokens to generate, one forward pass each, 1..%d\n"
		"                     (default 256; a BOS token ends the story sooner)\n"
		"  --reference FILE   no daemon: read the weights from FILE and multiply\n"
		"                     them with a plain loop, BF16 in and out as uw_matmul\n"
		"  --float32          with --reference: float32 in and out of every matmul,\n"
		"                     the arithmetic of the story in data/README.md\n"
		"  --tokenizer FILE   llama2.c tokenizer (default %s/tok512.bin)\n",
		UW_DEFAULT_SOCKET, stories260K.seq_len, UW_DATADIR);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Greedy: the highest logit, the lowest index among equals. */
static int argmax(const float *v, int n)
{
	int best = 0;
	for (int i = 1; i < n; i++)
		if (v[i] > v[best])
			best = i;
	return best;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "model", required_argument, NULL, 'm' },
		{ "steps", required_argument, NULL, 'n' },
		{ "reference", required_argument, NULL, 'r' },
		{ "tokenizer", required_argument, NULL, 't' },
		{ "float32", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *socket = NULL, *model = "stories260K", *reference = NULL;
	const char *tokpath = UW_DATADIR "/tok512.bin";
	struct uwerr e = { 0 };
	struct weights *w = NULL;
	struct llama *m = NULL;
	struct tokenizer tok = { 0 };
	int steps = 256, token = TOK_BOS, pos = 0, rc = 1, o;
	unsigned flags = 0;
	double t0, secs;
	char *end;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 's': socket = optarg; break;
		case 'm': model = optarg; break;
		case 'r': reference = optarg; break;
		case 't': tokpath = optarg; break;
		case 'f': flags |= LLAMA_F32; break;
		case 'n':
			steps = (int)strtol(optarg, &end, 10);
			if (*end || end == optarg || steps < 1 || steps > stories260K.seq_len) {
				fprintf(stderr, "uw-stories: --steps %s: not a count in 1..%d\n",
					optarg, stories260K.seq_len);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "uw-stories: unexpected argument %s\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (reference && socket) {
		fprintf(stderr, "uw-stories: --reference and --socket exclude each other\n");
		return 2;
	}
	if ((flags & LLAMA_F32) && !reference) {
		fprintf(stderr, "uw-stories: --float32 needs --reference (uw_matmul is BF16)\n");
		return 2;
	}

	if ((reference ? weights_open_reference(reference, &w, &e)
		       : weights_open_daemon(socket, model, &w, &e)) < 0 ||
	    tok_load(tokpath, stories260K.vocab, &tok, &e) < 0 ||
	    llama_open(w, &stories260K, flags, &m, &e) < 0)
		goto fail;

	t0 = now();
	while (pos < steps) {
		const float *logits;
		int next;
		if (llama_forward(m, token, pos, &logits, &e) < 0)
			goto fail;
		next = argmax(logits, stories260K.vocab);
		pos++;
		if (next == TOK_BOS)   /* llama2.c: BOS delimits sequences */
			break;
		fputs(tok_decode(&tok, token, next), stdout);
		fflush(stdout);
		token = next;
	}
	putchar('\n');
	secs = now() - t0;
	fprintf(stderr, "uw-stories: %d tokens in %.3f s, %.1f tokens/s (%s weights)\n",
		pos, secs, pos / secs, w->kind);
	rc = 0;
	goto done;
fail:
	fprintf(stderr, "uw-stories: %s\n", e.msg);
done:
	llama_close(m);
	tok_free(&tok);
	weights_close(w);
	return rc;
}
