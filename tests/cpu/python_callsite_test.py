#!/usr/bin/env python3
# python_callsite_test.py — call sites of Python allocations: a child Python process allocates
# through libspillway.so on the CPU simulator with SPILLWAY_REPORT set, and the reports written
# at exit are checked. Once holding the GIL (ctypes.PyDLL: read through the C API), and five
# times without it (ctypes.CDLL releases the GIL, as PyTorch's operators do before they
# allocate): a plain call; a nested call through functions named in latin-1, UCS-2 and UCS-4
# characters; a function compiled under a non-ASCII file name; a generator; a threading.Thread.
# On CPython 3.11-3.13 (GIL builds) each of those must name this file's line in
# allocate_without_gil, then its callers; on any other version stderr must say once that such
# frames are not read, and those call sites must have C++ frames only. Run by ctest (label cpu)
# with SPILLWAY_BUILD set, under every interpreter found at configure time.
import ctypes
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import threading
import unittest
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[2] / "python"))

MiB = 1 << 20
FOREIGN_FILE = "/nowhere/gebäude/dätei_€.py"  # a UCS-2 file name (the euro sign)
FOREIGN_CODE = "def fremd(lib, allocate):\n    return allocate(lib, 6 << 20)\n"


def line_of(marker):
    for n, text in enumerate(HERE.read_text(encoding="utf-8").splitlines(), 1):
        if marker in text and "line_of(" not in text:
            return n
    raise AssertionError(marker)


def allocate_with_gil(lib):
    return lib.spillway_malloc(9 << 20, 0, None)  # MARK-WITH-GIL


def allocate_without_gil(lib, size):
    return lib.spillway_malloc(size, 0, None)  # MARK-WITHOUT-GIL


def größe(lib):  # a latin-1 name
    return размер(lib)  # MARK-GROESSE


def размер(lib):  # a UCS-2 name
    return 𠀀(lib)  # MARK-RAZMER


def 𠀀(lib):  # a UCS-4 name
    return allocate_without_gil(lib, 7 << 20)  # MARK-UCS4


def generate(lib):
    yield allocate_without_gil(lib, 5 << 20)  # MARK-GENERATOR


def in_thread(lib, out):
    out.append(allocate_without_gil(lib, 4 << 20))  # MARK-THREAD


def child():
    import spillway
    path = spillway.library_path()
    with_gil = ctypes.PyDLL(path)  # the same loaded library; calls keep the GIL
    without_gil = ctypes.CDLL(path)
    for lib in (with_gil, without_gil):
        lib.spillway_malloc.restype = ctypes.c_void_p
        lib.spillway_malloc.argtypes = [ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p]
    assert allocate_with_gil(with_gil)  # MARK-CHILD-WITH-GIL
    assert allocate_without_gil(without_gil, 8 << 20)  # MARK-CHILD-PLAIN
    assert größe(without_gil)  # MARK-CHILD-NESTED
    ns = {}
    exec(compile(FOREIGN_CODE, FOREIGN_FILE, "exec"), ns)
    assert ns["fremd"](without_gil, allocate_without_gil)  # MARK-CHILD-FOREIGN
    assert next(generate(without_gil))  # MARK-CHILD-GENERATOR
    out = []
    t = threading.Thread(target=in_thread, args=(without_gil, out))
    t.start()
    t.join()
    assert out and out[0]
    assert with_gil.spillway_malloc(4096, 0, None)  # below SPILLWAY_CALLSITE_MIN: no call site


def supported():
    """Whether Spillway reads the frames of a thread without the GIL on this interpreter."""
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return (3, 11) <= sys.version_info[:2] <= (3, 13) and not free_threaded


def here(marker, function):
    return f"{HERE}:{line_of(marker)} {function}"


class PythonCallSites(unittest.TestCase):
    def test_report_names_the_python_lines(self):
        with tempfile.TemporaryDirectory() as out:
            env = dict(os.environ, SPILLWAY_BACKEND="sim", SPILLWAY_SIM_DEVICE_MEMORY="1G",
                       SPILLWAY_REPORT=out, SPILLWAY_CALLSITE_MIN="1M")
            for var in ("SPILLWAY_TRACE", "RANK", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK",
                        "SLURM_PROCID"):
                env.pop(var, None)
            r = subprocess.run([sys.executable, str(HERE), "child"], env=env,
                               capture_output=True, text=True, encoding="utf-8", timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            text = Path(out, "summary.txt").read_text(encoding="utf-8")
            report = json.loads(Path(out, "report.json").read_text(encoding="utf-8"))
            html = Path(out, "report.html").read_text(encoding="utf-8")

        blocks = report["devices"][0]["largest_at_peak"]
        self.assertEqual([b["requested"] for b in blocks],
                         [9 * MiB, 8 * MiB, 7 * MiB, 6 * MiB, 5 * MiB, 4 * MiB, 4096])
        self.assertNotIn("callsite", blocks[-1])

        def python_frames(block):
            site = block["callsite"]
            self.assertTrue(site["frames"], site)
            return [f["frame"] for f in site["frames"] if f["lang"] == "python"]

        # With the GIL: read through the C API.
        where = here("MARK-WITH-GIL", "allocate_with_gil")
        self.assertIn("          at " + where, text)
        self.assertTrue(blocks[0]["callsite"]["summary"].startswith(where), blocks[0])
        self.assertEqual(python_frames(blocks[0])[:2],
                         [where, here("MARK-CHILD-WITH-GIL", "child")])
        self.assertIn(where, html)

        if not supported():
            version = "{}.{}".format(*sys.version_info[:2])
            if sysconfig.get_config_var("Py_GIL_DISABLED"):
                version += " free-threaded"
            line = (f"spillway: Python frames of allocations made without the GIL are not read "
                    f"on CPython {version} (supported: 3.11, 3.12, 3.13); call sites there have "
                    "C++ frames only")
            self.assertEqual(r.stderr.count(line), 1, r.stderr)
            self.assertEqual(r.stderr.count("spillway: Python frames"), 1, r.stderr)
            for b in blocks[1:6]:
                self.assertEqual(python_frames(b), [], b)
            return

        self.assertNotIn("spillway: Python frames", r.stderr)
        self.assertNotIn("layout check", r.stderr)
        innermost = here("MARK-WITHOUT-GIL", "allocate_without_gil")
        expected = {
            8: [innermost, here("MARK-CHILD-PLAIN", "child")],
            7: [innermost, here("MARK-UCS4", "𠀀"), here("MARK-RAZMER", "размер"),
                here("MARK-GROESSE", "größe"), here("MARK-CHILD-NESTED", "child")],
            6: [innermost, f"{FOREIGN_FILE}:2 fremd", here("MARK-CHILD-FOREIGN", "child")],
            5: [innermost, here("MARK-GENERATOR", "generate"),
                here("MARK-CHILD-GENERATOR", "child")],
            4: [innermost, here("MARK-THREAD", "in_thread")],
        }
        for b in blocks[1:6]:
            mib = b["requested"] // MiB
            want = expected[mib]
            got = python_frames(b)
            self.assertEqual(got[:len(want)], want, f"{mib} MiB block: {got}")
            self.assertTrue(b["callsite"]["summary"].startswith(innermost), b["callsite"])
            # C++ frames follow the Python ones, as with the GIL.
            self.assertIn("c++", [f["lang"] for f in b["callsite"]["frames"]], b["callsite"])
        # The thread's next frame is threading.Thread.run.
        thread_frames = python_frames(blocks[5])
        self.assertGreater(len(thread_frames), 2, thread_frames)
        self.assertTrue(thread_frames[2].startswith(str(Path(threading.__file__))) and
                        thread_frames[2].endswith(" Thread.run"), thread_frames)
        self.assertIn("          at " + innermost, text)
        self.assertIn("größe", html)


if __name__ == "__main__":
    if sys.argv[1:] == ["child"]:
        child()
    else:
        unittest.main(verbosity=2)
