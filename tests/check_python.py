"""check_python: the Python binding (python/unweight) against a real unweightd
on the host backend: load, attach, the tensor directory, decode bit-exact
against the safetensors bytes (read here by a parser of its own), matmul
against a float64 reference, the daemon's refusals raised with its message,
and no lease or fd left after the context managers exit.

Run by tests/check_python.sh, which picks the interpreter and the library;
needs $UW_TOP_SRCDIR, $UW_TOP_BUILDDIR and the package on sys.path.
"""
import errno
import gc
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

import unweight

SRC = os.environ["UW_TOP_SRCDIR"]
BUILD = os.environ["UW_TOP_BUILDDIR"]
FIXTURE = "stories260K.safetensors"
MODEL = "stories"
# The C suites' bound (tests/clientutil.c): |y - ref| <= 1e-2 * sum |x||w|.
REL = 1e-2
ST_NUMPY = {"BF16": "<u2", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
            "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "F64": "<f8"}


def read_safetensors(path):
    """{name: (dtype, shape, bytes)} straight from the file's header and data."""
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(blob[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = (t["dtype"], tuple(t["shape"]), blob[base + a:base + b])
    return out


def fds():
    return len(os.listdir("/proc/self/fd"))


class Daemon:
    """unweightd from the build tree, host backend, on a temporary socket,
    allowed to load from a directory holding a copy of the fixture."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="check_python.")
        shutil.copy(os.path.join(SRC, "data", FIXTURE), self.dir)
        self.sock = os.path.join(self.dir, "uwd.sock")
        self.log = open(os.path.join(self.dir, "unweightd.log"), "w+")
        self.proc = subprocess.Popen(
            [os.path.join(BUILD, "unweightd"), "--socket", self.sock, "--backend", "host",
             "--allow-dir", self.dir, "--foreground"], stderr=self.log)
        end = time.monotonic() + 20
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError(f"unweightd did not start:\n{self.log_text()}")
            time.sleep(0.02)

    def log_text(self):
        if not self.log.closed:
            self.log.seek(0)
            self.text = self.log.read()
        return self.text

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.log_text()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


D = None
SOURCE = None


def setUpModule():
    global D, SOURCE
    D = Daemon()
    path = os.path.join(D.dir, FIXTURE)
    SOURCE = read_safetensors(path)
    with unweight.connect(D.sock) as c:
        st = c.load(MODEL, path, timeout=60)
    assert st["state"] == "ready" and st["tensors"] == len(SOURCE), st


def tearDownModule():
    D.stop()


def attached_clients(model=MODEL):
    with unweight.connect(D.sock) as c:
        return c.model_stats(model)["attached_clients"]


def eventually_no_clients(model=MODEL, seconds=10):
    """The daemon ends a closed connection's leases when it reads the close,
    which may come after another connection's stats request: poll."""
    end = time.monotonic() + seconds
    while attached_clients(model) != 0 and time.monotonic() < end:
        time.sleep(0.01)
    return attached_clients(model)


def bf16_reference(x_bits, w_bits):
    """float64 x . w^T of BF16 bit patterns, and sum |x||w| per element."""
    x = unweight.bf16_to_float32(x_bits).astype(np.float64)
    w = unweight.bf16_to_float32(w_bits).astype(np.float64)
    return x @ w.T, np.abs(x) @ np.abs(w).T


class TestBinding(unittest.TestCase):
    def setUp(self):
        self.c = unweight.connect(D.sock)
        self.m = self.c.attach(MODEL)

    def tearDown(self):
        self.m.close()
        self.c.close()

    def matrices(self):
        return [n for n, (dt, shape, _) in SOURCE.items() if dt == "BF16" and len(shape) == 2]

    def test_directory(self):
        self.assertEqual(self.m.backend, "host")
        self.assertEqual(sorted(self.m.tensors()), sorted(SOURCE))
        self.assertEqual(len(self.m), len(SOURCE))
        for name, (dt, shape, raw) in SOURCE.items():
            info = self.m[name].info
            self.assertEqual((info.name, info.dtype, info.shape, info.raw_bytes),
                             (name, dt, shape, len(raw)), name)
            self.assertIn(name, self.m)
        self.assertNotIn("no.such.weight", self.m)
        with self.assertRaises(KeyError):
            self.m["no.such.weight"]
        # The MLP matrices are the R12 format's case: the test would pass on
        # RAW copies alone otherwise.
        self.assertEqual(self.m["model.layers.0.mlp.up_proj.weight"].info.format, "r12")

    def test_decode_bit_exact(self):
        for name, (dt, shape, raw) in SOURCE.items():
            got = self.m[name].decode()
            self.assertEqual(got.shape, shape, name)
            self.assertEqual(got.dtype, np.dtype(ST_NUMPY[dt]), name)
            self.assertEqual(got.tobytes(), raw, f"{name}: decoded bytes differ")
            # Into a buffer of ours: raw_bytes written, the guard byte after them not.
            out = np.full(len(raw) + 1, 0xA5, np.uint8)
            self.assertIs(self.m[name].decode(out), out)
            self.assertEqual(out[:-1].tobytes(), raw, name)
            self.assertEqual(out[-1], 0xA5, f"{name}: decode wrote past raw_bytes")
        with self.assertRaisesRegex(ValueError, "out holds 3 bytes"):
            self.m[self.matrices()[0]].decode(np.empty(3, np.uint8))

    def test_matmul_against_float64(self):
        rng = np.random.default_rng(7)
        for name in self.matrices():
            w = np.frombuffer(SOURCE[name][2], np.uint16).reshape(SOURCE[name][1])
            rows, cols = w.shape
            for lead in [(1,), (5,), (2, 3)]:
                xf = rng.uniform(-2, 2, lead + (cols,)).astype(np.float32)
                x = unweight.float32_to_bf16(xf)
                y = self.m[name].matmul(x)
                self.assertEqual((y.dtype, y.shape), (np.dtype(np.uint16), lead + (rows,)))
                ref, mag = bf16_reference(x.reshape(-1, cols), w)
                got = unweight.bf16_to_float32(y.reshape(-1, rows)).astype(np.float64)
                err = np.abs(got - ref)
                bad = ~(err <= REL * mag)
                self.assertFalse(bad.any(), f"{name} batch {lead}: {bad.sum()} outputs off; "
                                 f"worst {np.max(err / np.maximum(mag, 1e-300))}")
                # float32 in is rounded to the same BF16 first; out given is written.
                out = np.zeros_like(y)
                self.assertIs(self.m[name].matmul(xf, out=out), out)
                np.testing.assert_array_equal(out, y)

    def test_bf16_conversion(self):
        # Expected bits worked out by hand: ties go to the even BF16.
        cases = {0x3F800000: 0x3F80, 0x3F808000: 0x3F80, 0x3F818000: 0x3F82,
                 0x3F808001: 0x3F81, 0x80000000: 0x8000, 0x7F7FFFFF: 0x7F80,
                 0xFF800000: 0xFF80, 0x00000001: 0x0000, 0x00008000: 0x0000,
                 0x00018000: 0x0002, 0x7FC00001: 0x7FC0, 0xFF800001: 0xFFC0}
        f = np.array(list(cases), np.uint32).view(np.float32)
        got = unweight.float32_to_bf16(f)
        self.assertEqual([hex(v) for v in got], [hex(v) for v in cases.values()])
        back = unweight.bf16_to_float32(np.array([0x3F80, 0xC040, 0x0001], np.uint16))
        self.assertEqual(list(back.view(np.uint32)), [0x3F800000, 0xC0400000, 0x00010000])
        with self.assertRaises(TypeError):
            unweight.float32_to_bf16(np.ones(2))   # float64 would round twice

    def test_bad_arguments(self):
        w = self.m[self.matrices()[0]]
        rows, cols = w.shape
        with self.assertRaisesRegex(ValueError, f"last dimension must be {cols}"):
            w.matmul(np.zeros((1, cols + 1), np.uint16))
        with self.assertRaisesRegex(TypeError, "BF16"):
            w.matmul(np.zeros((1, cols), np.int32))
        with self.assertRaisesRegex(ValueError, "shape"):
            w.matmul(np.zeros((1, cols), np.uint16), out=np.zeros((1, rows + 1), np.uint16))
        with self.assertRaisesRegex(ValueError, "contiguous"):
            w.matmul(np.zeros((cols, 2), np.uint16).T)
        with self.assertRaisesRegex(ValueError, "overlaps"):
            buf = np.zeros(max(rows, cols) * 2, np.uint16)
            w.matmul(buf[:cols], out=buf[1:rows + 1])
        with self.assertRaisesRegex(ValueError, "stream"):
            w.decode(stream=1)
        norm = next(n for n, (dt, s, _) in SOURCE.items() if len(s) == 1)
        with self.assertRaisesRegex(TypeError, "2-D BF16"):
            self.m[norm].matmul(np.zeros((1, SOURCE[norm][1][0]), np.uint16))

    def test_daemon_errors(self):
        with self.assertRaises(unweight.UnweightError) as cm:
            self.c.attach("no-such-model")
        e = cm.exception
        self.assertEqual(e.errno, errno.ENOENT)
        self.assertEqual(e.function, "uw_attach")
        self.assertIn("no-such-model", e.message)   # the daemon's words
        self.assertIn(e.message, str(e))
        # A path outside --allow-dir: refused by the daemon, which names it.
        outside = os.path.join(SRC, "data", FIXTURE)
        with self.assertRaises(unweight.UnweightError) as cm:
            self.c.load("outside", outside)
        self.assertEqual(cm.exception.errno, errno.EACCES)
        self.assertIn(FIXTURE, cm.exception.message)
        with self.assertRaises(unweight.UnweightError) as cm:
            self.c.load(MODEL, os.path.join(D.dir, FIXTURE))
        self.assertEqual(cm.exception.errno, errno.EEXIST)
        with self.assertRaises(unweight.UnweightError) as cm:
            self.c.evict(MODEL)   # this test holds a lease
        self.assertEqual(cm.exception.errno, errno.EBUSY)
        with self.assertRaises(unweight.UnweightError) as cm:
            unweight.connect(os.path.join(D.dir, "no.sock"))
        self.assertIn(cm.exception.errno, (errno.ENOENT, errno.ECONNREFUSED))

    def test_verify_and_tune(self):
        r = self.c.verify(MODEL)
        self.assertEqual(r["bad_tensors"], 0)
        self.assertEqual(r["bad"], [])
        st = self.c.model_stats(MODEL)
        self.assertEqual(r["tensors"], st["tensors"])
        # every tensor's bytes, without the alignment between them
        self.assertEqual(r["bytes"], sum(self.m[n].info.resident_bytes for n in self.m))
        self.assertEqual(st["verify_state"], "ok")
        with self.assertRaises(unweight.UnweightError) as cm:
            self.c.verify("no-such-model")
        self.assertEqual(cm.exception.errno, errno.ENOENT)
        # the host backend runs no GPU kernels: nothing to tune
        with self.assertRaises(unweight.UnweightError) as cm:
            self.c.tune(MODEL)
        self.assertEqual(cm.exception.errno, errno.EOPNOTSUPP)
        self.assertIn("nothing to tune", str(cm.exception))

    def test_stats(self):
        st = self.c.stats()
        self.assertEqual(st["backend"], "host")
        self.assertEqual([m["name"] for m in st["models"]], [MODEL])
        self.assertEqual(self.c.model_stats(MODEL)["attached_clients"], 1)


class TestLifetime(unittest.TestCase):
    def test_context_managers_release(self):
        before = fds()
        self.assertEqual(attached_clients(), 0)
        with unweight.connect(D.sock) as c:
            with c.attach(MODEL) as m:
                t = m["model.layers.0.mlp.up_proj.weight"]
                t.decode()
                self.assertEqual(attached_clients(), 1)
            self.assertTrue(m.closed)
            self.assertEqual(attached_clients(), 0)
            with self.assertRaisesRegex(ValueError, "detached"):
                t.decode()
            # An exception leaving the block detaches too.
            with self.assertRaises(KeyError):
                with c.attach(MODEL) as m2:
                    m2["no.such.weight"]
            self.assertTrue(m2.closed)
            self.assertEqual(attached_clients(), 0)
        self.assertTrue(c.closed)
        with self.assertRaisesRegex(ValueError, "closed"):
            c.attach(MODEL)
        self.assertEqual(fds(), before)

    def test_garbage_collected_model_detaches(self):
        before = fds()
        c = unweight.connect(D.sock)
        m = c.attach(MODEL)
        self.assertEqual(attached_clients(), 1)
        del m
        gc.collect()
        self.assertEqual(attached_clients(), 0)
        c.close()
        self.assertEqual(fds(), before)

    def test_disconnect_ends_leases(self):
        # As in C: the daemon ends the leases of a closed connection, and the
        # models attached through it stay mapped until they are detached.
        c = unweight.connect(D.sock)
        m = c.attach(MODEL)
        bits = m["model.layers.0.mlp.up_proj.weight"].decode()
        c.close()
        self.assertEqual(eventually_no_clients(), 0)
        np.testing.assert_array_equal(m["model.layers.0.mlp.up_proj.weight"].decode(), bits)
        m.close()

    def test_evict_after_detach(self):
        path = os.path.join(D.dir, FIXTURE)
        with unweight.connect(D.sock) as c:
            c.load("second", path, timeout=60)
            with c.attach("second") as m:
                self.assertEqual(len(m), len(SOURCE))
            c.evict("second")
            with self.assertRaises(unweight.UnweightError) as cm:
                c.attach("second")
            self.assertEqual(cm.exception.errno, errno.ENOENT)


HAVE_TORCH = importlib.util.find_spec("torch") is not None


@unittest.skipUnless(HAVE_TORCH, "no torch in this python (CI has none; the GPU host has)")
class TestTorchHost(unittest.TestCase):
    """unweight.torch on the host backend: torch CPU tensors."""
    W = "model.layers.0.mlp.up_proj.weight"

    def setUp(self):
        import torch
        self.torch = torch
        self.c = unweight.connect(D.sock)
        self.m = self.c.attach(MODEL)
        self.w = np.frombuffer(SOURCE[self.W][2], np.uint16).reshape(SOURCE[self.W][1])

    def tearDown(self):
        self.m.close()
        self.c.close()

    def bits(self, t):
        return t.contiguous().view(self.torch.int16).numpy().view(np.uint16)

    def test_unweight_linear(self):
        from unweight.torch import UnweightLinear
        torch = self.torch
        rows, cols = self.w.shape
        bias = torch.arange(rows, dtype=torch.bfloat16) / 8
        lin = UnweightLinear(self.m, self.W, bias=bias)
        self.assertEqual((lin.in_features, lin.out_features), (cols, rows))
        g = torch.Generator().manual_seed(3)
        x = (torch.rand((2, 3, cols), generator=g) * 4 - 2).to(torch.bfloat16)
        with torch.no_grad():
            y = lin(x)
        self.assertEqual((y.dtype, tuple(y.shape)), (torch.bfloat16, (2, 3, rows)))
        ref, mag = bf16_reference(self.bits(x).reshape(-1, cols), self.w)
        ref += bias.double().numpy()
        got = unweight.bf16_to_float32(self.bits(y).reshape(-1, rows)).astype(np.float64)
        # The bias adds one BF16 rounding of the sum: half an ulp of it.
        tol = REL * mag + np.abs(ref) * 2.0 ** -8
        self.assertTrue((np.abs(got - ref) <= tol).all())
        # A non-contiguous input gives the same result.
        xt = x.transpose(0, 1).contiguous().transpose(0, 1)
        self.assertFalse(xt.is_contiguous())
        with torch.no_grad():
            self.assertTrue(torch.equal(lin(xt), y))
        with self.assertRaisesRegex(TypeError, "bfloat16"):
            lin(x.float())
        with self.assertRaisesRegex(RuntimeError, "no backward"):
            lin(x.clone().requires_grad_())

    def test_patch_linear(self):
        from unweight.torch import UnweightLinear, linear_mapping, patch_linear
        torch = self.torch
        rows, cols = self.w.shape
        net = torch.nn.Module()
        net.up = torch.nn.Linear(cols, rows, bias=False, dtype=torch.bfloat16)
        net.other = torch.nn.Linear(cols, 5, bias=False, dtype=torch.bfloat16)
        with torch.no_grad():
            net.up.weight.copy_(torch.from_numpy(self.w.astype(np.int16)).view(torch.bfloat16))
        x = (torch.rand((4, cols)) * 4 - 2).to(torch.bfloat16)
        with torch.no_grad():
            before = net.up(x)
        old = net.up
        # Checked before anything is replaced.
        with self.assertRaisesRegex(ValueError, "is 5x"):
            patch_linear(net, self.m, {"up": self.W, "other": self.W})
        self.assertIs(net.up, old)
        with self.assertRaises(KeyError):
            patch_linear(net, self.m, {"up": "no.such.weight"})
        self.assertEqual(patch_linear(net, self.m, {"up": self.W}), 1)
        self.assertIsInstance(net.up, UnweightLinear)
        self.assertIsNone(old.weight)
        self.assertIsInstance(net.other, torch.nn.Linear)
        with torch.no_grad():
            after = net.up(x)
        # torch's CPU product and uw_matmul add in other orders: within the bound.
        mag = np.abs(unweight.bf16_to_float32(self.bits(x))).astype(np.float64) @ \
            np.abs(unweight.bf16_to_float32(self.w)).astype(np.float64).T
        diff = (after.double() - before.double()).abs().numpy()
        self.assertTrue((diff <= 2 * REL * mag).all())
        # linear_mapping names the layers whose NAME.weight the model has.
        net2 = torch.nn.Module()
        net2.model = torch.nn.Module()
        net2.model.layers = torch.nn.ModuleList([torch.nn.Module()])
        net2.model.layers[0].mlp = torch.nn.Module()
        net2.model.layers[0].mlp.up_proj = torch.nn.Linear(cols, rows, bias=False)
        net2.model.layers[0].mlp.extra = torch.nn.Linear(cols, rows, bias=False)
        self.assertEqual(linear_mapping(net2, self.m),
                         {"model.layers.0.mlp.up_proj": self.W})


if __name__ == "__main__":
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"library {unweight.lib()._name}")
    prog = unittest.main(exit=False, verbosity=2)
    if not prog.result.wasSuccessful() and D is not None:
        print("--- unweightd log\n" + D.log_text(), file=sys.stderr)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
