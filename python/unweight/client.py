"""client: connections, attached models and their tensors, over libunweight-client.

The objects wrap the C library's (libunweight-client(3)) one to one: Client is a
uw_client, Model a uw_model, Tensor a const uw_tensor. Every failure of the
library is raised as UnweightError, with the library's detailed message (the
daemon's own words where it refused).
"""
from __future__ import annotations

import ctypes
import errno as _errno
import json
import os
import threading
import time
import weakref
from ctypes import POINTER, byref, c_char_p, c_uint64, c_void_p
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _buffers, _lib

PathLike = Union[str, "os.PathLike[str]"]

# enum uw_dtype, in order from 1: the safetensors names.
DTYPES = (None, "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
          "I32", "U32", "F32", "F64", "I64", "U64")
# What decode() allocates on the host for each dtype: BF16 as uint16 bit
# patterns, the FP8 types as uint8 bytes (NumPy has neither).
NUMPY_DTYPES = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "F8_E5M2": np.uint8,
                "F8_E4M3": np.uint8, "I16": np.int16, "U16": np.uint16, "F16": np.float16,
                "BF16": np.uint16, "I32": np.int32, "U32": np.uint32, "F32": np.float32,
                "F64": np.float64, "I64": np.int64, "U64": np.uint64}
TORCH_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "F8_E5M2": "float8_e5m2",
                "F8_E4M3": "float8_e4m3fn", "I16": "int16", "U16": "uint16",
                "F16": "float16", "BF16": "bfloat16", "I32": "int32", "U32": "uint32",
                "F32": "float32", "F64": "float64", "I64": "int64", "U64": "uint64"}
FORMATS = {0: "raw", 1: "r12", 3: "r11"}  # 2: R11's retired first layout

_lib_lock = threading.Lock()
_lib_handle: Optional[ctypes.CDLL] = None


def lib() -> ctypes.CDLL:
    """The loaded libunweight-client (loaded at first use; see _lib)."""
    global _lib_handle
    with _lib_lock:
        if _lib_handle is None:
            _lib_handle = _lib.load()
        return _lib_handle


class UnweightError(OSError):
    """A call of libunweight-client failed.

    errno: the positive errno value (the library returned its negative);
    strerror: the library's text for it (uw_strerror);
    message: the detailed message (uw_errmsg), the daemon's words where it refused;
    function: the C function that failed."""

    def __init__(self, err: int, function: str, message: str, strerror: str) -> None:
        super().__init__(err, strerror)
        self.function = function
        self.message = message

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        return f"{self.function}: {self.message or self.strerror} ({name})"


def _check(rc: int, function: str) -> int:
    if rc < 0:
        L = lib()
        raise UnweightError(-rc, function, L.uw_errmsg().decode(errors="replace"),
                            L.uw_strerror(rc).decode(errors="replace"))
    return rc


def _name(s: str, what: str) -> bytes:
    if not isinstance(s, str):
        raise TypeError(f"{what}: expected a str, got {type(s).__name__}")
    return s.encode()


class Client:
    """A connection to unweightd (uw_connect). A context manager: leaving the
    block disconnects. Models attached through it stay usable until they are
    detached, as in the C library."""

    def __init__(self, socket: Optional[PathLike] = None) -> None:
        h = c_void_p()
        path = None if socket is None else os.fsencode(os.fspath(socket))
        _check(lib().uw_connect(path, byref(h)), "uw_connect")
        self._handle: Optional[int] = h.value
        self._fin = weakref.finalize(self, lib().uw_disconnect, h)

    def _live(self) -> int:
        if self._handle is None:
            raise ValueError("unweight client: the connection is closed")
        return self._handle

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Disconnect (uw_disconnect); a second call does nothing."""
        self._handle = None
        self._fin()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def attach(self, model: str) -> "Model":
        """Attach the loaded model named model (uw_attach)."""
        h = c_void_p()
        _check(lib().uw_attach(self._live(), _name(model, "attach"), byref(h)),
               "uw_attach")
        return Model(model, h.value)

    def load(self, model: str, paths: Union[PathLike, Sequence[PathLike]],
             device: Optional[str] = None, wait: bool = True,
             timeout: Optional[float] = None) -> Dict[str, Any]:
        """Ask the daemon to load checkpoint files under the name model
        (uw_load_device; device None is the daemon's default). With wait,
        return once the model is ready (its stats object), raise UnweightError
        (EIO, with the daemon's reason) if the load failed, TimeoutError after
        timeout seconds; without, return at once with its current stats."""
        if isinstance(paths, (str, bytes, os.PathLike)):
            paths = [paths]
        enc = [os.fsencode(os.fspath(p)) for p in paths]
        arr = (c_char_p * len(enc))(*enc)
        dev = None if device is None else _name(device, "load: device")
        _check(lib().uw_load_device(self._live(), _name(model, "load"), dev, arr, len(enc)),
               "uw_load_device")
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.model_stats(model)
            if not wait or st["state"] == "ready":
                return st
            if st["state"] == "failed":
                raise UnweightError(_errno.EIO, "load", f"load {model}: {st.get('error', '')}",
                                    os.strerror(_errno.EIO))
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"load {model}: not ready after {timeout} s "
                                   f"(progress {st.get('progress', 0):.3f})")
            time.sleep(0.05)

    def evict(self, model: str, force: bool = False) -> None:
        """Unload model (uw_evict); force: even while clients hold leases."""
        _check(lib().uw_evict(self._live(), _name(model, "evict"),
                              _lib.EVICT_FORCE if force else 0), "uw_evict")

    def verify(self, model: str) -> Dict[str, Any]:
        """Have the daemon read model's resident bytes back and check every
        tensor's CRC-32C (uw_verify; an admin request). Returns {"tensors",
        "bytes", "seconds", "bad_tensors", "bad" (the first names)}: a
        corrupt model is a result with bad_tensors > 0, not an exception."""
        p = POINTER(_lib.VerifyResult)()
        _check(lib().uw_verify(self._live(), _name(model, "verify"), byref(p)), "uw_verify")
        try:
            r = p.contents
            return {"tensors": r.tensors, "bytes": r.bytes, "seconds": r.seconds,
                    "bad_tensors": r.nbad,
                    "bad": [r.bad[i].decode() for i in range(r.nnames)]}
        finally:
            lib().uw_verify_free(p)

    def tune(self, model: Optional[str] = None, force: bool = False) -> int:
        """Queue the daemon's matmul tuner for model (None: every ready model;
        uw_tune, an admin request; the cuda backend only). Returns the job
        number, which stats()["tune"]["done"] reaches when the work is done."""
        job = c_uint64()
        name = None if model is None else _name(model, "tune")
        _check(lib().uw_tune(self._live(), name, _lib.TUNE_FORCE if force else 0, byref(job)),
               "uw_tune")
        return job.value

    def stats(self, model: Optional[str] = None) -> Dict[str, Any]:
        """The daemon's statistics (uw_stats_json), parsed: unweightd(8),
        STATISTICS, lists the keys."""
        p = c_void_p()
        name = None if model is None else _name(model, "stats")
        _check(lib().uw_stats_json(self._live(), name, byref(p)), "uw_stats_json")
        try:
            text = ctypes.string_at(p.value)
        finally:
            _lib.libc.free(p)
        return json.loads(text)

    def model_stats(self, model: str) -> Dict[str, Any]:
        """The stats object of one model."""
        models = self.stats(model)["models"]
        if len(models) != 1 or models[0].get("name") != model:
            raise RuntimeError(f"stats {model}: the daemon answered {models!r}")
        return models[0]


def connect(socket: Optional[PathLike] = None) -> Client:
    """Connect to unweightd at socket; None: $UNWEIGHT_SOCKET, else
    /run/unweight/unweightd.sock."""
    return Client(socket)


@dataclass(frozen=True)
class TensorInfo:
    """What uw_tensor_info tells of a tensor. layout holds the fields of
    struct uw_layout (docs/FORMAT.md, "Resident formats"), for callers with
    their own kernels."""
    name: str
    dtype: str                  # safetensors name: "BF16", "F32", ...
    shape: Tuple[int, ...]
    raw_bytes: int              # bytes of the decoded tensor
    format: str                 # resident format: "raw", "r12" or "r11"
    resident_bytes: int
    crc32c: int                 # CRC-32C of the resident bytes
    layout: Dict[str, Any]


def _cuda_ordinal(ptr: int) -> Optional[int]:
    """The CUDA device ordinal of a device pointer (cuPointerGetAttribute), or
    None where the driver cannot tell."""
    try:
        cu = ctypes.CDLL("libcuda.so.1")
        ordinal = ctypes.c_int(-1)
        CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL = 9
        rc = cu.cuPointerGetAttribute(byref(ordinal), CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                                      ctypes.c_uint64(ptr))
    except (OSError, AttributeError):
        return None
    return ordinal.value if rc == 0 and ordinal.value >= 0 else None


class Model:
    """An attached model (uw_attach). A context manager: leaving the block
    detaches (uw_detach), and the daemon's lease ends. Its tensors must not
    be in use while it is closed."""

    def __init__(self, name: str, handle: int) -> None:
        self.name = name
        self._handle: Optional[int] = handle
        self._fin = weakref.finalize(self, lib().uw_detach, c_void_p(handle))
        self._tensors: Dict[str, Tensor] = {}
        self.backend = "cuda" if lib().uw_model_backend(handle) == _lib.BACKEND_CUDA else "host"
        self._device: Optional[int] = None

    def _live(self) -> int:
        if self._handle is None:
            raise ValueError(f"model {self.name}: detached")
        return self._handle

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Detach; a second call does nothing. Raises UnweightError if the
        daemon could not be told (the model is unmapped all the same)."""
        if self._handle is None:
            return
        self._handle = None
        self._tensors.clear()
        rc = self._fin()
        if rc is not None:
            _check(rc, "uw_detach")

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            self.close()
        except UnweightError:
            if exc_type is None:
                raise

    def tensors(self) -> List[str]:
        """The tensors' names, in the daemon's order."""
        L, h = lib(), self._live()
        out = []
        for i in range(L.uw_model_tensor_count(h)):
            info = _lib.TensorInfoC()
            _check(L.uw_tensor_info(L.uw_model_tensor(h, i), byref(info)), "uw_tensor_info")
            out.append(info.name.decode())
        return out

    def __len__(self) -> int:
        return lib().uw_model_tensor_count(self._live())

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(lib().uw_model_find(self._live(), name.encode()))

    def __getitem__(self, name: str) -> "Tensor":
        t = self._tensors.get(name)
        if t is None:
            p = lib().uw_model_find(self._live(), _name(name, "tensor"))
            if not p:
                raise KeyError(f"model {self.name} has no tensor {name!r}")
            t = self._tensors[name] = Tensor(self, p)
        return t

    @property
    def cuda_device(self) -> Optional[int]:
        """cuda backend: the ordinal, in this process, of the GPU holding the
        model (torch's cuda:N), None if the driver cannot tell; host: None."""
        if self.backend != "cuda" or len(self) == 0:
            return None
        if self._device is None:
            t = lib().uw_model_tensor(self._live(), 0)
            self._device = _cuda_ordinal(lib().uw_tensor_device_ptr(t))
        return self._device


class Tensor:
    """One tensor of an attached model."""

    def __init__(self, model: Model, handle: int) -> None:
        self.model = model
        self._handle = handle
        info = _lib.TensorInfoC()
        _check(lib().uw_tensor_info(handle, byref(info)), "uw_tensor_info")
        lay = info.layout
        layout = {f: getattr(lay, f) for f, _ in _lib.Layout._fields_}
        layout["palette"] = bytes(lay.palette)
        self.info = TensorInfo(
            name=info.name.decode(), dtype=DTYPES[info.dtype],
            shape=tuple(info.shape[i] for i in range(info.ndim)),
            raw_bytes=info.raw_bytes, format=FORMATS.get(lay.format, str(lay.format)),
            resident_bytes=lay.nbytes, crc32c=lay.crc32c, layout=layout)

    def __repr__(self) -> str:
        i = self.info
        return f"<unweight.Tensor {i.name} {i.dtype}{list(i.shape)} {i.format}>"

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.info.shape

    @property
    def dtype(self) -> str:
        return self.info.dtype

    @property
    def host_ptr(self) -> int:
        """Base of the resident bytes (host backend; 0 on cuda)."""
        self.model._live()
        return lib().uw_tensor_host_ptr(self._handle) or 0

    @property
    def device_ptr(self) -> int:
        """Base of the resident bytes as a CUDA device address (cuda; 0 on host)."""
        self.model._live()
        return lib().uw_tensor_device_ptr(self._handle)

    def _memory(self, b: _buffers.Buf, what: str) -> None:
        """Refuse memory of the wrong kind before the library sees it."""
        if self.model.backend == "host":
            if b.device != _buffers.HOST:
                raise TypeError(f"{self.name}: {what}: the model is on the host backend: "
                                "host memory (NumPy, torch CPU) expected")
            return
        if b.device == _buffers.HOST:
            raise TypeError(f"{self.name}: {what}: the model is on the cuda backend: "
                            "device memory (torch CUDA tensor) expected")
        dev = self.model.cuda_device
        if b.device is not None and dev is not None and b.device != dev:
            raise ValueError(f"{self.name}: {what} is on cuda:{b.device}, "
                             f"the model on cuda:{dev}")

    def _stream(self, stream: Optional[int], *bufs: _buffers.Buf) -> Optional[int]:
        if self.model.backend == "host":
            if stream:
                raise ValueError(f"{self.name}: a stream on the host backend")
            return None
        if stream is not None:
            return stream
        return next((b.stream for b in bufs if b.stream is not None), 0)

    def _new(self, shape: Tuple[int, ...], dtype: str, like: Any) -> Any:
        """A new array for an output: NumPy on the host, torch on the model's GPU."""
        if self.model.backend == "host" and not _buffers._torch_tensor(like):
            return np.empty(shape, NUMPY_DTYPES[dtype])
        import torch
        if self.model.backend == "host":
            device = torch.device("cpu")
        elif _buffers._torch_tensor(like):
            device = like.device
        else:
            dev = self.model.cuda_device
            device = torch.device("cuda", torch.cuda.current_device() if dev is None else dev)
        return torch.empty(shape, dtype=getattr(torch, TORCH_DTYPES[dtype]), device=device)

    def decode(self, out: Any = None, *, stream: Optional[int] = None) -> Any:
        """Write the tensor's original bytes (uw_decode) into out and return it.

        out: a C-contiguous writable array of at least raw_bytes bytes, whose
        bytes are written as in the checkpoint whatever out's dtype. None: a
        new one of the tensor's shape: on the host a NumPy array (BF16 as
        uint16 bit patterns, FP8 as uint8), on cuda a torch tensor of the
        tensor's dtype on the model's GPU. cuda: the work is queued on stream,
        else on torch's current stream of out's device, else the default
        stream; host: synchronous."""
        self.model._live()
        if out is None:
            out = self._new(self.shape, self.dtype, None)
        b = _buffers.view(out, f"{self.name}: decode: out", writable=True)
        self._memory(b, "out")
        if b.nbytes < self.info.raw_bytes:
            raise ValueError(f"{self.name}: decode: out holds {b.nbytes} bytes, "
                             f"the tensor {self.info.raw_bytes}")
        _check(lib().uw_decode(self._handle, b.ptr, b.nbytes, self._stream(stream, b)), "uw_decode")
        return out

    def _matmul_raw(self, x: int, batch: int, y: int, stream: Optional[int]) -> None:
        """uw_matmul on pointers the caller has checked (unweight.torch's hot path)."""
        self.model._live()
        _check(lib().uw_matmul(self._handle, x, batch, y, stream), "uw_matmul")

    def matmul(self, x: Any, out: Any = None, *, stream: Optional[int] = None) -> Any:
        """y = x . W^T (uw_matmul) for this 2-D BF16 tensor W of shape
        [rows, cols]: x has shape [..., cols], y [..., rows]; float32
        accumulation, BF16 out (rounded to nearest even). Returns y.

        Host: x is a NumPy array of BF16 bit patterns (uint16, or a bfloat16
        dtype) or of float32, which is rounded to BF16 first
        (float32_to_bf16); or a torch CPU bfloat16 tensor. cuda: x is a torch
        bfloat16 tensor on the model's GPU (or an object with
        __cuda_array_interface__ of uint16 BF16 bits, with out given). x and
        out must be C-contiguous. out: None, or an array of BF16 of shape
        [..., rows] (uint16 bits for NumPy) that does not overlap x; None
        allocates one like x. Streams as for decode."""
        self.model._live()
        if self.dtype != "BF16" or len(self.shape) != 2:
            raise TypeError(f"{self.name}: matmul needs a 2-D BF16 tensor, "
                            f"this is {self.dtype}{list(self.shape)}")
        rows, cols = self.shape
        if isinstance(x, np.ndarray) and x.dtype == np.float32:
            x = _buffers.float32_to_bf16(x)
        bx = _buffers.view(x, f"{self.name}: matmul: x", writable=False)
        self._memory(bx, "x")
        if not bx.bf16:
            raise TypeError(f"{self.name}: matmul: x must hold BF16 (a torch.bfloat16 tensor, "
                            "or NumPy uint16 bits or float32)")
        if len(bx.shape) == 0 or bx.shape[-1] != cols:
            raise ValueError(f"{self.name}: matmul: x has shape {list(bx.shape)}, "
                             f"the last dimension must be {cols}")
        yshape = tuple(bx.shape[:-1]) + (rows,)
        if out is None:
            if not (isinstance(x, np.ndarray) or _buffers._torch_tensor(x)):
                raise TypeError(f"{self.name}: matmul: give out for a "
                                f"{type(x).__name__} x")
            out = self._new(yshape, "BF16", x)
        by = _buffers.view(out, f"{self.name}: matmul: out", writable=True)
        self._memory(by, "out")
        if not by.bf16 or tuple(by.shape) != yshape:
            raise ValueError(f"{self.name}: matmul: out must be BF16 of shape {list(yshape)}")
        if bx.ptr < by.ptr + by.nbytes and by.ptr < bx.ptr + bx.nbytes:
            raise ValueError(f"{self.name}: matmul: out overlaps x")
        batch = int(np.prod(bx.shape[:-1], dtype=np.int64))
        if batch:
            self._matmul_raw(bx.ptr, batch, by.ptr, self._stream(stream, bx, by))
        return out
