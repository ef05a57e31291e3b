#!/usr/bin/env python3
"""hf_llama: a Hugging Face LlamaForCausalLM whose every linear layer is served
by unweightd, checked against the same model unpatched.

It builds the model from a config (default: a 1.1B-parameter shape, hidden
2048, intermediate 5632, 22 layers, 32 heads and 4 KV heads, vocabulary
32000) with synthetic BF16 weights, writes them to a safetensors file in
--dir, has the daemon at --socket load it, and then:

1. runs the unpatched model: greedy generation of --tokens tokens at batch 1
   (keeping each step's logits) and timed generations at each --batch;
2. replaces every nn.Linear by unweight.torch.UnweightLinear over the
   daemon's tensor of the same weight (a tied lm_head maps to the embedding
   it shares), which drops the process's copies of those weights;
3. runs the same generations patched, once free-running and once fed the
   unpatched model's tokens (so that every step sees the same prefix), and
   compares the tokens and the logits.

The weights (--weights): "decisive" (the default) has every layer N(0, 0.02)
(norms 1), but plants a next-token rule the way a trained model has one:
the embedding is N(0, --embed-std) and the lm_head row of token j is the
unit direction of the embedding of token perm[j] (a random permutation), so
the token after t is the j with perm[j] = t, unless the layers say
otherwise (the run prints how far they turn the final hidden state from
the token's own embedding). Its top logit stands
clear of the next, as a trained model's mostly does, so greedy generation is
a fair test of the served weights. "random" makes every weight N(0, --std):
its logits are noise, and near-ties come every few steps.

Tokens must be the same, except where the unpatched model's top two logits
are a near-tie: within one BF16 step, or within twice the largest logit
difference seen. There the order in which float32 sums are added decides,
and the output says so. The logits are judged against a float32 copy of the
same model fed the same tokens: both BF16 models err from it, and the
patched model's mean error may be at most --err-ratio times the unpatched
model's (the BF16 rounding of every layer's output, not the weights, is
what both lose; the weights are bit-exact). The exit status is 0 only
then. It prints GPU memory before and after patching (torch's allocations,
the bytes of the weights the process still holds, nvidia-smi's per-process
figures) and tokens/s of both models. Run by examples/hf_llama-gpu.sh,
which starts a daemon on the cuda backend; by hand:

    PYTHONPATH=python UNWEIGHT_LIB=BUILD/.libs/libunweight-client.so.0 \\
        python3 examples/hf_llama.py --socket /tmp/uw.sock --dir /tmp/uwdir
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

import unweight
from unweight.torch import UnweightLinear, patch_linear

MiB = 1 << 20


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--socket", default=os.environ.get("UNWEIGHT_SOCKET"),
                   help="unweightd's socket (default $UNWEIGHT_SOCKET)")
    p.add_argument("--dir", required=True,
                   help="where to write the checkpoint: a directory the daemon may load from")
    p.add_argument("--config", help="a LlamaConfig JSON file (default: the 1.1B shape)")
    p.add_argument("--model-name", default="hf-llama")
    p.add_argument("--tokens", type=int, default=32, help="tokens to generate")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8],
                   help="batch sizes to time")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--weights", choices=("decisive", "random"), default="decisive",
                   help="random: every weight N(0, std); decisive: the same, but a "
                        "next-token rule planted in the embedding and lm_head")
    p.add_argument("--std", type=float, default=0.02, help="weights are N(0, std)")
    p.add_argument("--embed-std", type=float, default=10.0,
                   help="decisive: the embedding is N(0, embed-std)")
    p.add_argument("--err-ratio", type=float, default=1.5,
                   help="largest ratio allowed of the patched model's mean |logit error| "
                        "to the unpatched model's, both against the float32 model")
    p.add_argument("--keep", action="store_true",
                   help="leave the model loaded and the checkpoint on disk")
    return p.parse_args()


def llama_config(path: Optional[str]):
    from transformers import LlamaConfig
    if path:
        with open(path) as f:
            return LlamaConfig(**json.load(f))
    return LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                       num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                       max_position_embeddings=2048, tie_word_embeddings=False)


def build_model(config, args: argparse.Namespace) -> nn.Module:
    """The model on the GPU in BF16, with synthetic weights (--weights)."""
    seed, std = args.seed, args.std
    from transformers import LlamaForCausalLM
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(prev)
    model.eval()
    g = torch.Generator(device="cuda").manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dtype != torch.bfloat16 or p.device.type != "cuda":
                raise RuntimeError(f"{name}: {p.dtype} on {p.device}, expected bfloat16 on cuda")
            if p.dim() == 1 and "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, std, generator=g)
        if args.weights == "decisive":
            plant_successors(model, seed, args.embed_std)
    return model


def plant_successors(model: nn.Module, seed: int, embed_std: float) -> None:
    """lm_head[j] = the unit direction of embedding[perm[j]]: after token t
    the top logit is that of the j with perm[j] = t (module docstring)."""
    emb, head = model.model.embed_tokens.weight, model.lm_head.weight
    if emb.data_ptr() == head.data_ptr():
        raise RuntimeError("--weights decisive needs an lm_head of its own "
                           "(tie_word_embeddings false); use --weights random")
    g = torch.Generator(device="cuda").manual_seed(seed + 1)
    emb.normal_(0.0, embed_std, generator=g)
    perm = torch.randperm(emb.shape[0], generator=g, device="cuda")
    head.copy_(nn.functional.normalize(emb[perm].float(), dim=1).to(head.dtype))


def unique_tensors(model: nn.Module) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """The state dict with each shared tensor once (what safetensors can
    store), and the names left out, mapped to the name kept."""
    kept: Dict[str, torch.Tensor] = {}
    alias: Dict[str, str] = {}
    by_ptr: Dict[Tuple[int, Tuple[int, ...]], str] = {}
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), tuple(t.shape))
        if t.numel() and key in by_ptr:
            alias[name] = by_ptr[key]
        else:
            by_ptr[key] = name
            kept[name] = t
    return kept, alias


def linear_targets(model: nn.Module, kept: Dict[str, torch.Tensor],
                   alias: Dict[str, str]) -> Dict[str, str]:
    """{Linear submodule: the checkpoint tensor holding its weight} for every
    nn.Linear; fails if one has no weight in the checkpoint."""
    mapping = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            w = f"{name}.weight"
            target = w if w in kept else alias.get(w)
            if target is None:
                raise RuntimeError(f"{name}: no tensor of the checkpoint holds {w}")
            mapping[name] = target
    return mapping


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the parameters the process holds (each shared one once)."""
    seen = {}
    for p in model.parameters():
        seen[p.data_ptr()] = p.numel() * p.element_size()
    return sum(seen.values())


@torch.inference_mode()
def greedy(model: nn.Module, prompt: torch.Tensor, n: int, keep_logits: bool,
           feed: Optional[torch.Tensor] = None
           ) -> Tuple[torch.Tensor, List[torch.Tensor], torch.Tensor, float]:
    """Greedy decoding with the KV cache. Returns the model's choice at each
    of n steps [B, n], each step's last-position logits (float32, CPU) if
    asked, the prompt's logits [B, T, V], and the seconds it took (prefill +
    n - 1 steps). feed [B, n]: feed these tokens instead of the model's own
    choices (teacher forcing), so that every step sees the same prefix."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = model(input_ids=prompt, use_cache=True)
    prefill = out.logits
    cache = out.past_key_values
    steps, logits = [], []
    last = out.logits[:, -1, :]
    for i in range(n):
        if keep_logits:
            logits.append(last.float().cpu())
        tok = last.argmax(dim=-1, keepdim=True)
        steps.append(tok)
        if i + 1 < n:
            nxt = tok if feed is None else feed[:, i:i + 1]
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            last = out.logits[:, -1, :]
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return torch.cat(steps, dim=1), logits, prefill.float(), elapsed


def bf16_ulp(v: float) -> float:
    """The spacing of BF16 numbers at v (8 significant bits)."""
    return math.ldexp(1.0, math.frexp(abs(v))[1] - 8) if v else 2.0 ** -133


def tie(ref_logits: torch.Tensor, a: int, b: int, diff: float) -> Tuple[bool, float, float]:
    """Whether the unpatched model's logits of tokens a (its choice) and b
    are a near-tie: at most one BF16 step apart, or within twice diff (the
    largest logit difference seen between the two models), so that float32
    sums added in another order can put them the other way. Also the margin
    and the bound."""
    la, lb = ref_logits[0, a].item(), ref_logits[0, b].item()
    bound = max(bf16_ulp(la), 2 * diff)
    return la - lb <= bound, la - lb, bound


def throughput(model: nn.Module, vocab: int, args: argparse.Namespace) -> Dict[int, float]:
    """tokens/s of greedy generation (prefill included) at each batch size,
    best of 3 after a warm-up."""
    res = {}
    g = torch.Generator().manual_seed(args.seed + 1)
    for b in args.batch:
        prompt = torch.randint(0, vocab, (b, args.prompt_len), generator=g).cuda()
        greedy(model, prompt, 4, False)
        best = min(greedy(model, prompt, args.tokens, False)[3] for _ in range(3))
        res[b] = b * args.tokens / best
    return res


def gpu_processes() -> str:
    """nvidia-smi's view of GPU memory per process (informational)."""
    try:
        r = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory",
                            "--format=csv,noheader"], capture_output=True, text=True,
                           timeout=30)
        return r.stdout.strip() or "(nvidia-smi lists no process)"
    except (OSError, subprocess.SubprocessError) as e:
        return f"(nvidia-smi: {e})"


def main() -> int:
    args = parse_args()
    if not torch.cuda.is_available():
        print("hf_llama: torch sees no CUDA device", file=sys.stderr)
        return 1
    import transformers
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.cuda.get_device_name()}, library {unweight.lib()._name}")
    config = llama_config(args.config)
    model = build_model(config, args)
    nparams = sum(p.numel() for p in model.parameters())
    kept, alias = unique_tensors(model)
    mapping = linear_targets(model, kept, alias)
    print(f"model: {nparams / 1e9:.3f} B parameters, {len(mapping)} linear layers, "
          f"{args.weights} weights" + (f", tied: {alias}" if alias else ""))

    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(os.path.abspath(args.dir), f"{args.model_name}.safetensors")
    from safetensors.torch import save_file
    t0 = time.perf_counter()
    save_file({k: v.detach().cpu().contiguous() for k, v in kept.items()}, path,
              metadata={"format": "pt"})
    print(f"wrote {path}: {os.path.getsize(path) / MiB:.0f} MiB in "
          f"{time.perf_counter() - t0:.1f} s")

    client = unweight.connect(args.socket)
    st = client.load(args.model_name, path, timeout=900)
    print(f"loaded into unweightd ({st['device']}): {st['raw_bytes'] / MiB:.0f} MiB raw, "
          f"{st['resident_bytes'] / MiB:.0f} MiB resident (ratio {st['ratio']:.3f}), "
          f"{st['load_seconds']:.2f} s")
    um = client.attach(args.model_name)
    if um.backend != "cuda":
        raise RuntimeError(f"the daemon holds {args.model_name} on {um.backend}; "
                           "this example runs the model on CUDA (unweightd --backend cuda)")
    if um.cuda_device is not None and um.cuda_device != torch.cuda.current_device():
        raise RuntimeError(f"the model is on cuda:{um.cuda_device}, torch uses "
                           f"cuda:{torch.cuda.current_device()}")

    g = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(0, config.vocab_size, (1, args.prompt_len), generator=g).cuda()

    # How much the layers move each position's final hidden state away from
    # its token's own embedding: the planted rule holds only while they do
    # not move it too far, and they must move it for the test to mean much.
    with torch.no_grad():
        hs = model(prompt, output_hidden_states=True).hidden_states
        cos = nn.functional.cosine_similarity(hs[0].float(), hs[-1].float(), dim=-1)
    print(f"final hidden state against the token's embedding: cosine {cos.mean().item():.3f} "
          f"(min {cos.min().item():.3f}) over the prompt")
    del hs

    # Unpatched.
    ref_tok, ref_logits, ref_prefill, _ = greedy(model, prompt, args.tokens, True)
    ref_tps = throughput(model, config.vocab_size, args)
    # The float32 model, a copy (casting the model itself back to BF16
    # would also cast its float32 buffers, the rotary frequencies).
    m32 = copy.deepcopy(model).float()
    f32_tok, f32_logits, f32_prefill, _ = greedy(m32, prompt, args.tokens, True, feed=ref_tok)
    del m32
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.synchronize()
    mem_before = torch.cuda.memory_allocated()
    w_before = weight_bytes(model)

    # Patched: every linear from the daemon.
    n = patch_linear(model, um, mapping)
    left = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if n != len(mapping) or left:
        raise RuntimeError(f"patched {n} of {len(mapping)} linear layers; left: {left}")
    del kept
    gc.collect()
    torch.cuda.empty_cache()
    mem_after = torch.cuda.memory_allocated()
    w_after = weight_bytes(model)
    served = sum(p.numel() * p.element_size() for m in model.modules()
                 if isinstance(m, UnweightLinear) for p in m.parameters())

    tok, _, prefill, _ = greedy(model, prompt, args.tokens, False)
    forced_tok, forced_logits, _, _ = greedy(model, prompt, args.tokens, True, feed=ref_tok)
    tps = throughput(model, config.vocab_size, args)

    # Compare.
    ok = True
    print(f"\nGPU memory of this process (torch.cuda.memory_allocated): "
          f"{mem_before / MiB:.1f} MiB unpatched, {mem_after / MiB:.1f} MiB patched")
    print(f"weights held by this process: {w_before / MiB:.1f} MiB unpatched, "
          f"{w_after / MiB:.1f} MiB patched (embedding and norms); "
          f"parameters of the {n} patched layers now {served} bytes")
    print(f"the daemon holds the whole checkpoint in {st['resident_bytes'] / MiB:.1f} MiB, "
          f"shared read-only (not counted above); nvidia-smi per process:\n  "
          + gpu_processes().replace("\n", "\n  "))

    # Logits, with the same prefix at every step: the prompt, then the
    # unpatched model's tokens fed to both.
    std = ref_prefill.std().item()
    dpre = (prefill - ref_prefill).abs().max().item()
    dstep = max((forced_logits[i] - ref_logits[i]).abs().max().item()
                for i in range(args.tokens))
    margins = [float(l[0].topk(2).values.diff().abs()) for l in ref_logits]
    print(f"\nlogits (float32 of BF16), same prefix: prompt ({args.prompt_len} positions) "
          f"max |diff| {dpre:.4f}; {args.tokens} generation steps max |diff| {dstep:.4f}; "
          f"unpatched logits std {std:.4f}; smallest top-2 margin of the unpatched "
          f"model {min(margins):.4f}")
    def err(pre, steps):
        """(mean, max) |logit - float32 model's| over the prompt and the steps."""
        d = [(pre - f32_prefill).abs().flatten().cpu()] + \
            [(steps[i] - f32_logits[i]).abs().flatten() for i in range(args.tokens)]
        d = torch.cat(d)
        return d.mean().item(), d.max().item()
    e_ref, e_pat = err(ref_prefill, ref_logits), err(prefill, forced_logits)
    print(f"against the float32 model: unpatched mean |err| {e_ref[0]:.5f} (max {e_ref[1]:.4f}), "
          f"patched mean |err| {e_pat[0]:.5f} (max {e_pat[1]:.4f}), "
          f"ratio {e_pat[0] / e_ref[0]:.3f}")
    agree = lambda t: int((t == f32_tok).sum().item())
    print(f"teacher-forced choices equal to the float32 model's: unpatched "
          f"{agree(ref_tok)} of {args.tokens}, patched {agree(forced_tok)} of {args.tokens}")
    if not e_pat[0] <= args.err_ratio * e_ref[0]:
        print(f"FAIL: the patched model errs more than {args.err_ratio}x the unpatched one")
        ok = False

    # Tokens. Where the unpatched model's top two logits are a near-tie, the
    # order in which float32 sums are added decides (the GPU kernels add in
    # another order than cuBLAS, and BF16 outputs then round one step apart);
    # anywhere else the choices must be the same.
    print(f"tokens unpatched:        {ref_tok[0].tolist()}")
    print(f"tokens patched:          {tok[0].tolist()}")
    print(f"patched, teacher-forced: {forced_tok[0].tolist()}")
    ties = 0
    for i in range(args.tokens):
        a, b = int(ref_tok[0, i]), int(forced_tok[0, i])
        if a != b:
            is_tie, margin, bound = tie(ref_logits[i], a, b, dstep)
            print(f"  step {i + 1}: unpatched {a}, patched {b}; unpatched margin {margin:.5f}, "
                  f"near-tie bound {bound:.5f}: " + ("a near-tie" if is_tie else "NOT a tie"))
            ties += is_tie
            ok &= is_tie
    same = (tok == ref_tok)[0]
    if bool(same.all()):
        print(f"tokens: the same {args.tokens} tokens, token for token")
    else:
        i = int((~same).nonzero()[0].item())
        is_tie = tie(ref_logits[i], int(ref_tok[0, i]), int(tok[0, i]), dstep)[0]
        print(f"tokens: the same up to step {i}; at step {i + 1} " +
              ("the unpatched model's top two logits are a near-tie" if is_tie else
               "they differ: FAIL"))
        ok &= is_tie
    print(f"teacher-forced choices: {args.tokens - ties} of {args.tokens} the same, "
          f"{ties} at near-ties")

    print("\ntokens/s (greedy, prefill of "
          f"{args.prompt_len} + {args.tokens} tokens, best of 3):")
    print(f"  {'batch':>5} {'unpatched':>10} {'unweight':>10} {'ratio':>6}")
    for b in args.batch:
        print(f"  {b:>5} {ref_tps[b]:>10.1f} {tps[b]:>10.1f} {tps[b] / ref_tps[b]:>6.2f}")

    del model
    um.close()
    if not args.keep:
        client.evict(args.model_name)
        os.remove(path)
    client.close()
    print("\nhf_llama: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
