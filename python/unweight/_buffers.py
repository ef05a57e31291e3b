"""_buffers: what uw_decode and uw_matmul are given, from NumPy arrays, PyTorch
tensors and __cuda_array_interface__ objects: a pointer, a size, a shape,
whether the elements are BF16, and where the memory is.

NumPy has no BF16 dtype, so on the host BF16 travels as uint16 arrays holding
the BF16 bit patterns (or as an array of a dtype named "bfloat16", such as
ml_dtypes', which is read the same way); float32_to_bf16 and bf16_to_float32
convert.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

HOST = -1   # Buf.device of host memory; CUDA memory has its device ordinal (or None)


@dataclass
class Buf:
    ptr: int
    nbytes: int
    shape: Tuple[int, ...]
    bf16: bool                 # 2-byte elements holding BF16
    device: Optional[int]      # HOST, a CUDA ordinal, or None: CUDA, ordinal unknown
    # The stream the producer's work is ordered on, if it says: torch's current
    # stream of the device, or the interface's "stream" (1 and 2 are the
    # runtime's legacy and per-thread default stream handles, valid as such).
    stream: Optional[int]


def _torch_tensor(obj: Any) -> bool:
    t = sys.modules.get("torch")
    return t is not None and isinstance(obj, t.Tensor)


def _numpy_bf16(dt: np.dtype) -> bool:
    return dt == np.uint16 or (dt.name == "bfloat16" and dt.itemsize == 2)


def view(obj: Any, what: str, writable: bool) -> Buf:
    """The memory of obj, which must be dense and row-major (C-contiguous)."""
    if _torch_tensor(obj):
        import torch
        if not obj.is_contiguous():
            raise ValueError(f"{what}: the tensor is not contiguous (call .contiguous())")
        if obj.device.type == "cuda":
            dev: Optional[int] = obj.device.index
            stream: Optional[int] = torch.cuda.current_stream(obj.device).cuda_stream
        elif obj.device.type == "cpu":
            dev, stream = HOST, None
        else:
            raise TypeError(f"{what}: a tensor on {obj.device} (cpu or cuda only)")
        return Buf(obj.data_ptr(), obj.numel() * obj.element_size(), tuple(obj.shape),
                   obj.dtype == torch.bfloat16, dev, stream)
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:
        shape = tuple(cai["shape"])
        item = np.dtype(cai["typestr"]).itemsize
        if cai.get("strides") is not None and \
                tuple(cai["strides"]) != tuple(np.empty(shape, f"V{item}").strides):
            raise ValueError(f"{what}: the array is not C-contiguous")
        ptr, readonly = cai["data"]
        if writable and readonly:
            raise ValueError(f"{what}: the array is read-only")
        stream = cai.get("stream")
        return Buf(ptr, int(np.prod(shape, dtype=np.int64)) * item, shape,
                   np.dtype(cai["typestr"]) == np.dtype("<u2"), None,
                   None if stream is None else int(stream))
    if isinstance(obj, np.ndarray):
        if not obj.flags.c_contiguous:
            raise ValueError(f"{what}: the array is not C-contiguous (np.ascontiguousarray)")
        if writable and not obj.flags.writeable:
            raise ValueError(f"{what}: the array is read-only")
        return Buf(obj.ctypes.data, obj.nbytes, obj.shape, _numpy_bf16(obj.dtype), HOST, None)
    raise TypeError(f"{what}: a {type(obj).__name__}; expected a NumPy array, a PyTorch "
                    "tensor or an object with __cuda_array_interface__")


def float32_to_bf16(a: np.ndarray) -> np.ndarray:
    """float32 to BF16 bit patterns (uint16), rounded to nearest, ties to even,
    as uw_matmul rounds its outputs; NaN stays NaN (quiet, sign kept)."""
    a = np.ascontiguousarray(a)
    if a.dtype != np.float32:
        raise TypeError(f"float32_to_bf16: {a.dtype} (float32 only: a float64 value "
                        "rounded through float32 could round twice)")
    u = a.view(np.uint32)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    quiet_nan = ((u >> 16) | 0x40).astype(np.uint16)
    return np.where(np.isnan(a), quiet_nan, rounded)


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """BF16 bit patterns (uint16, or a bfloat16 dtype) to float32: exact."""
    bits = np.ascontiguousarray(bits)
    if not _numpy_bf16(bits.dtype):
        raise TypeError(f"bf16_to_float32: {bits.dtype} (uint16 BF16 bits expected)")
    return (bits.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
