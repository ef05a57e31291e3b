"""load_peers: the loaders unweightd is measured against in bench/load.sh,
on the GPU host (python3 with torch and safetensors):

  naive        per tensor: read() into one reused pageable buffer, then a
               synchronous host-to-device copy (cudaMemcpy) -- our own
               baseline, what a first loader would do;
  safetensors  safetensors.torch.load_file(shard, device="cuda") per shard,
               the loader users run today.

    python3 bench/load_peers.py naive|safetensors SHARD.safetensors...

Prints one line: the method, bytes, seconds and GB/s (1e9). CUDA is set up
before the clock starts; the clock stops after torch.cuda.synchronize().
"""
import json
import os
import struct
import sys
import time

import torch


def naive(paths):
    tensors, total = [], 0
    heads = []
    for p in paths:
        with open(p, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
        heads.append((p, 8 + n, hdr))
    most = max(t["data_offsets"][1] - t["data_offsets"][0]
               for _, _, h in heads for k, t in h.items() if k != "__metadata__")
    buf = bytearray(most)
    view = memoryview(buf)
    host = torch.frombuffer(buf, dtype=torch.uint8)
    t0 = time.perf_counter()
    for p, start, hdr in heads:
        fd = os.open(p, os.O_RDONLY)
        try:
            for k, t in hdr.items():
                if k == "__metadata__":
                    continue
                b, e = t["data_offsets"]
                got = 0
                while got < e - b:
                    r = os.preadv(fd, [view[got:e - b]], start + b + got)
                    if r <= 0:
                        raise OSError(f"{p}: short read")
                    got += r
                tensors.append(host[:e - b].to("cuda"))
                total += e - b
        finally:
            os.close(fd)
    torch.cuda.synchronize()
    return total, time.perf_counter() - t0


def safetensors_load(paths):
    from safetensors.torch import load_file
    total, keep = 0, []
    t0 = time.perf_counter()
    for p in paths:
        d = load_file(p, device="cuda")
        total += sum(t.numel() * t.element_size() for t in d.values())
        keep.append(d)
    torch.cuda.synchronize()
    return total, time.perf_counter() - t0


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("naive", "safetensors"):
        sys.exit(__doc__)
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    fn = naive if sys.argv[1] == "naive" else safetensors_load
    total, s = fn(sys.argv[2:])
    print(f"{sys.argv[1]}: {total} bytes in {s:.3f} s: {total / 1e9 / s:.2f} GB/s")


if __name__ == "__main__":
    main()
