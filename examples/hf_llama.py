#!/usr/bin/env python3
"""hf_llama: a Hugging Face LlamaForCausalLM whose every linear layer is served
by unweightd, checked against the same model unpatched.

It builds the model from a config (default: a 1.1B-parameter shape, hidden
2048, intermediate 5632, 22 layers, 32 heads and 4 KV heads, vocabulary
32000) with synthetic N(0, 0.02) BF16 weights (norms 1), writes them to a
safetensors file in --dir, has the daemon at --socket load it, and then:

1. runs the unpatched model: greedy generation of --tokens tokens at batch 1
   (keeping each step's logits) and timed generations at each --batch;
2. replaces every nn.Linear by unweight.torch.UnweightLinear over the
   daemon's tensor of the same weight (a tied lm_head maps to the embedding
   it shares), which drops the process's copies of those weights;
3. runs the same generations patched, and compares: tokens must match
   token for token, and the logits are compared step by step.

It prints GPU memory before and after patching (torch's allocations and the
bytes of the weights the process still holds) and tokens/s of both models.
Exit status 0 only when the tokens match and the logits agree within
--logit-tol of their standard deviation. Run by examples/hf_llama-gpu.sh,
which starts a daemon on the cuda backend; by hand:

    PYTHONPATH=python UNWEIGHT_LIB=BUILD/.libs/libunweight-client.so.0 \\
        python3 examples/hf_llama.py --socket /tmp/uw.sock --dir /tmp/uwdir
"""
from __future__ import annotations

import argparse
import gc
import json
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
    p.add_argument("--std", type=float, default=0.02, help="weights are N(0, std)")
    p.add_argument("--logit-tol", type=float, default=0.1,
                   help="largest |logit difference| allowed, in standard deviations "
                        "of the unpatched logits")
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


def build_model(config, seed: int, std: float) -> nn.Module:
    """The model on the GPU in BF16, with synthetic weights."""
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
    return model


def unique_tensors(model: nn.Module) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """The state dict with each shared tensor once (what safetensors can
    store), and the names left out, mapped to the name kept."""
    kept: Dict[str, torch.Tensor] = {}
    alias: Dict[str, str] = {}
    by_ptr: Dict[Tuple[int, Tuple[int, ...]], str] = {}
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), tuple(t.shape))
        if key in by_ptr:
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
def greedy(model: nn.Module, prompt: torch.Tensor, n: int, keep_logits: bool
           ) -> Tuple[torch.Tensor, List[torch.Tensor], torch.Tensor, float]:
    """Greedy decoding with the KV cache: the n new tokens [B, n], each
    step's last-position logits (float32, on the CPU) if asked, the prompt's
    logits [B, T, V], and the seconds it took (prefill + n - 1 steps)."""
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
            out = model(input_ids=tok, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            last = out.logits[:, -1, :]
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return torch.cat(steps, dim=1), logits, prefill.float(), elapsed


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
    model = build_model(config, args.seed, args.std)
    nparams = sum(p.numel() for p in model.parameters())
    kept, alias = unique_tensors(model)
    mapping = linear_targets(model, kept, alias)
    print(f"model: {nparams / 1e9:.3f} B parameters, {len(mapping)} linear layers"
          + (f", tied: {alias}" if alias else ""))

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

    # Unpatched.
    ref_tok, ref_logits, ref_prefill, _ = greedy(model, prompt, args.tokens, True)
    ref_tps = throughput(model, config.vocab_size, args)
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

    tok, logits, prefill, _ = greedy(model, prompt, args.tokens, True)
    tps = throughput(model, config.vocab_size, args)

    # Compare.
    ok = True
    print(f"\nGPU memory of this process (torch.cuda.memory_allocated): "
          f"{mem_before / MiB:.1f} MiB unpatched, {mem_after / MiB:.1f} MiB patched")
    print(f"weights held by this process: {w_before / MiB:.1f} MiB unpatched, "
          f"{w_after / MiB:.1f} MiB patched (embedding and norms); "
          f"parameters of the {n} patched layers now {served} bytes")
    print(f"the daemon holds them in {st['resident_bytes'] / MiB:.1f} MiB, shared "
          f"read-only (not counted above); nvidia-smi per process:\n  "
          + gpu_processes().replace("\n", "\n  "))

    std = ref_prefill.std().item()
    dpre = (prefill - ref_prefill).abs().max().item()
    steps = min(len(ref_logits), len(logits))
    same = (tok == ref_tok)[0]
    first_diff = int((~same).nonzero()[0].item()) if not bool(same.all()) else None
    upto = steps if first_diff is None else first_diff + 1  # same inputs up to there
    dstep = max((logits[i] - ref_logits[i]).abs().max().item() for i in range(upto))
    margins = []
    for i in range(upto):
        top2 = ref_logits[i][0].topk(2).values
        margins.append((top2[0] - top2[1]).item())
    print(f"\nlogits: prompt (teacher-forced, {args.prompt_len} positions) max |diff| "
          f"{dpre:.4f}; generation steps 1..{upto} max |diff| {dstep:.4f}; "
          f"unpatched logits std {std:.4f}; smallest top-2 margin of the unpatched "
          f"model over those steps {min(margins):.4f}")
    if max(dpre, dstep) > args.logit_tol * std:
        print(f"FAIL: logits differ by more than {args.logit_tol} standard deviations")
        ok = False
    print(f"tokens unpatched: {ref_tok[0].tolist()}")
    print(f"tokens patched:   {tok[0].tolist()}")
    if first_diff is None:
        print(f"tokens: the same {args.tokens} tokens, token for token")
    else:
        i = first_diff
        a, b = int(ref_tok[0, i]), int(tok[0, i])
        print(f"FAIL: tokens differ first at step {i + 1}: unpatched {a}, patched {b}; "
              f"unpatched logits there {ref_logits[i][0, a].item():.4f} vs "
              f"{ref_logits[i][0, b].item():.4f}, patched {logits[i][0, a].item():.4f} vs "
              f"{logits[i][0, b].item():.4f} (a margin under the logit difference is a "
              "near-tie: try another --seed)")
        ok = False

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
