#!/usr/bin/env python3
# python_callsite_test.py — call sites of Python allocations: a child Python process allocates
# through libspillway.so on the CPU simulator with SPILLWAY_REPORT set, once holding the GIL
# (ctypes.PyDLL: the report must name this file's line) and once without it (ctypes.CDLL
# releases the GIL: C++ frames only); the reports written at exit are then checked. Run by ctest
# (label cpu) with SPILLWAY_BUILD set.
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[2] / "python"))


def line_of(marker):
    for n, text in enumerate(HERE.read_text().splitlines(), 1):
        if marker in text and "line_of(" not in text:
            return n
    raise AssertionError(marker)


def allocate_with_gil(lib):
    return lib.spillway_malloc(8 << 20, 0, None)  # MARK-WITH-GIL


def allocate_without_gil(lib):
    return lib.spillway_malloc(6 << 20, 0, None)  # MARK-WITHOUT-GIL


def child():
    import spillway
    path = spillway.library_path()
    with_gil = ctypes.PyDLL(path)  # the same loaded library; calls keep the GIL
    without_gil = ctypes.CDLL(path)
    for lib in (with_gil, without_gil):
        lib.spillway_malloc.restype = ctypes.c_void_p
        lib.spillway_malloc.argtypes = [ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p]
    assert allocate_with_gil(with_gil)
    assert allocate_without_gil(without_gil)
    assert with_gil.spillway_malloc(4096, 0, None)  # below SPILLWAY_CALLSITE_MIN: no call site


class PythonCallSites(unittest.TestCase):
    def test_report_names_the_python_line(self):
        with tempfile.TemporaryDirectory() as out:
            env = dict(os.environ, SPILLWAY_BACKEND="sim", SPILLWAY_SIM_DEVICE_MEMORY="1G",
                       SPILLWAY_REPORT=out, SPILLWAY_CALLSITE_MIN="1M")
            for var in ("SPILLWAY_TRACE", "RANK", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK",
                        "SLURM_PROCID"):
                env.pop(var, None)
            r = subprocess.run([sys.executable, str(HERE), "child"], env=env,
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            text = Path(out, "summary.txt").read_text()
            report = json.loads(Path(out, "report.json").read_text())
            html = Path(out, "report.html").read_text()

        where = f"{HERE}:{line_of('MARK-WITH-GIL')} allocate_with_gil"
        self.assertIn("          at " + where, text)
        blocks = report["devices"][0]["largest_at_peak"]
        self.assertEqual([b["requested"] for b in blocks], [8 << 20, 6 << 20, 4096])
        site = blocks[0]["callsite"]
        self.assertTrue(site["summary"].startswith(where), site["summary"])
        py = [f["frame"] for f in site["frames"] if f["lang"] == "python"]
        self.assertEqual(py[0], where)
        self.assertIn(f"{HERE}:", py[1])
        self.assertTrue(py[1].endswith(" child"), py)
        # Without the GIL: C++ frames only (no Python file named).
        site = blocks[1]["callsite"]
        self.assertTrue(site["frames"], site)
        self.assertTrue(all(f["lang"] == "c++" for f in site["frames"]), site)
        self.assertNotIn("callsite", blocks[2])
        self.assertIn(where, html)


if __name__ == "__main__":
    if sys.argv[1:] == ["child"]:
        child()
    else:
        unittest.main(verbosity=2)
