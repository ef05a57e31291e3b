"""_lib: find libunweight-client, load it with ctypes, declare its functions.

The library is looked for, in order: the file named by $UNWEIGHT_LIB; the
libtool output (.libs/) of a build tree: $UW_TOP_BUILDDIR, then the source
tree this package sits in and its build/ directory (scripts/build.sh); then
the system's dynamic linker (an installed libunweight-client.so.0).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (POINTER, Structure, c_char_p, c_double, c_int, c_size_t, c_uint,
                    c_uint8, c_uint32, c_uint64, c_void_p)
from pathlib import Path
from typing import List

SONAME = "libunweight-client.so.0"
MAX_DIMS = 8       # UW_MAX_DIMS
PALETTE_SIZE = 16  # UW_PALETTE_SIZE
BACKEND_HOST, BACKEND_CUDA = 0, 1
EVICT_FORCE = 1
TUNE_FORCE = 1


class Layout(Structure):
    """struct uw_layout."""
    _fields_ = [
        ("format", c_uint32), ("dtype", c_uint32),
        ("rows", c_uint64), ("cols", c_uint64), ("nbytes", c_uint64),
        ("crc32c", c_uint32), ("palette", c_uint8 * PALETTE_SIZE),
        ("mant_off", c_uint64), ("mant_stride", c_uint64),
        ("nib_off", c_uint64), ("nib_stride", c_uint64),
        ("patch_grp_off", c_uint64), ("patch_off", c_uint64), ("npatch", c_uint64),
    ]


class TensorInfoC(Structure):
    """struct uw_tensor_info."""
    _fields_ = [
        ("name", c_char_p), ("dtype", c_uint32), ("ndim", c_uint32),
        ("shape", c_uint64 * MAX_DIMS), ("raw_bytes", c_uint64), ("layout", Layout),
    ]


class VerifyResult(Structure):
    """struct uw_verify_result."""
    _fields_ = [
        ("tensors", c_uint64), ("bytes", c_uint64), ("seconds", c_double),
        ("nbad", c_uint64), ("nnames", c_size_t), ("bad", POINTER(c_char_p)),
    ]


def candidates() -> List[str]:
    """Where the library is looked for, in order (see the module's docstring)."""
    env = os.environ.get("UNWEIGHT_LIB")
    if env:
        return [env]   # named explicitly: no fallback that could hide a typo
    tops = []
    if os.environ.get("UW_TOP_BUILDDIR"):
        tops.append(Path(os.environ["UW_TOP_BUILDDIR"]))
    src = Path(__file__).resolve().parent.parent.parent
    if (src / "client" / "unweight.h").is_file():
        tops += [src, src / "build"]
    found = [str(t / ".libs" / SONAME) for t in tops if (t / ".libs" / SONAME).is_file()]
    system = ctypes.util.find_library("unweight-client")
    return found + [system or SONAME]


def _declare(lib: ctypes.CDLL) -> None:
    sig = {
        "uw_connect": (c_int, [c_char_p, POINTER(c_void_p)]),
        "uw_disconnect": (None, [c_void_p]),
        "uw_attach": (c_int, [c_void_p, c_char_p, POINTER(c_void_p)]),
        "uw_detach": (c_int, [c_void_p]),
        "uw_model_backend": (c_int, [c_void_p]),
        "uw_model_tensor_count": (c_size_t, [c_void_p]),
        "uw_model_tensor": (c_void_p, [c_void_p, c_size_t]),
        "uw_model_find": (c_void_p, [c_void_p, c_char_p]),
        "uw_tensor_info": (c_int, [c_void_p, POINTER(TensorInfoC)]),
        "uw_tensor_host_ptr": (c_void_p, [c_void_p]),
        "uw_tensor_device_ptr": (c_uint64, [c_void_p]),
        "uw_decode": (c_int, [c_void_p, c_void_p, c_size_t, c_void_p]),
        "uw_matmul": (c_int, [c_void_p, c_void_p, c_size_t, c_void_p, c_void_p]),
        "uw_load_device": (c_int, [c_void_p, c_char_p, c_char_p, POINTER(c_char_p), c_size_t]),
        "uw_evict": (c_int, [c_void_p, c_char_p, c_uint]),
        "uw_stats_json": (c_int, [c_void_p, c_char_p, POINTER(c_void_p)]),
        "uw_verify": (c_int, [c_void_p, c_char_p, POINTER(POINTER(VerifyResult))]),
        "uw_verify_free": (None, [POINTER(VerifyResult)]),
        "uw_tune": (c_int, [c_void_p, c_char_p, c_uint, POINTER(c_uint64)]),
        "uw_strerror": (c_char_p, [c_int]),
        "uw_errmsg": (c_char_p, []),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args


def load() -> ctypes.CDLL:
    """Load the first library of candidates() that loads; OSError naming every try."""
    tried = []
    for path in candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path}: {e}")
            continue
        _declare(lib)
        return lib
    raise OSError("libunweight-client not found (set UNWEIGHT_LIB to its path); tried:\n  "
                  + "\n  ".join(tried))


libc = ctypes.CDLL(None)
libc.free.argtypes, libc.free.restype = [c_void_p], None
