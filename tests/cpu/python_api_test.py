#!/usr/bin/env python3
# python_api_test.py — the Python package (python/spillway) against the real libspillway.so on
# the CPU simulator: stats fields, budget, trim, summary, errors as SpillwayError with the
# library's message, and spillway.torch's refusal when PyTorch is missing. Run by ctest
# (label cpu) with SPILLWAY_BUILD set; exits non-zero on the first failed check.
import ctypes
import os
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
os.environ["SPILLWAY_BACKEND"] = "sim"
os.environ["SPILLWAY_SIM_DEVICE_MEMORY"] = "1G"

import spillway  # noqa: E402


class PythonApi(unittest.TestCase):
    def test_stats_fields(self):
        st = spillway.stats(0)
        for key in ("allocated_bytes", "peak_allocated_bytes", "reserved_bytes",
                    "peak_reserved_bytes", "live_blocks", "alloc_count", "budget_bytes",
                    "granularity_bytes"):
            self.assertIn(key, st)
        self.assertEqual(st["granularity_bytes"], 2 << 20)
        self.assertEqual(spillway.device_count(), 1)
        self.assertTrue(os.path.exists(spillway.library_path()))

    def test_budget_and_trim(self):
        spillway.set_budget(64 << 20, device=0)
        self.assertEqual(spillway.stats(0)["budget_bytes"], 64 << 20)
        spillway.set_budget(0, device=0)
        spillway.trim(0, device=0)
        spillway.reset_peak_stats(0)

    def test_errors_carry_the_message(self):
        with self.assertRaises(spillway.SpillwayError) as cm:
            spillway.stats(5)
        self.assertIn("invalid device", str(cm.exception))
        with self.assertRaises(spillway.SpillwayError) as cm:
            spillway.set_budget(1 << 20)  # below one physical chunk
        self.assertIn("SPILLWAY_ERR_INVALID_VALUE", str(cm.exception))

    def test_set_tracking_without_a_tracker(self):
        with self.assertRaises(spillway.SpillwayError) as cm:
            spillway.set_tracking(False)  # no tracker in this process
        self.assertIn("SPILLWAY_TRACK=1", str(cm.exception))
        with self.assertRaises(TypeError):
            spillway.set_tracking(1)

    def test_mark(self):
        spillway.mark("step 1")  # no trace in this process: checked, not recorded
        with self.assertRaises(spillway.SpillwayError) as cm:
            spillway.mark("")
        self.assertIn("label", str(cm.exception))
        with self.assertRaises(TypeError):
            spillway.mark(3)

    def test_offload_calls(self):
        lib = spillway._LIB
        lib.spillway_malloc.restype = ctypes.c_void_p
        lib.spillway_malloc.argtypes = [ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p]
        lib.spillway_free.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int,
                                      ctypes.c_void_p]
        p = lib.spillway_malloc(8 << 20, 0, None)
        self.assertTrue(p)
        self.assertEqual(spillway.residency(p), "device")
        spillway.offload(p, "host")
        spillway.offload_synchronize()
        self.assertEqual(spillway.residency(p), "host")
        st = spillway.offload_stats()
        self.assertGreaterEqual(st["evictions"], 1)
        self.assertGreaterEqual(st["host_bytes"], 6 << 20)
        self.assertEqual(st["in_place_returns"], 0)  # no tracker: no in-place use at all
        spillway.prefetch(p)
        self.assertEqual(spillway.residency(p), "device")
        spillway.advise(p, "keep_on_device")
        with self.assertRaises(spillway.SpillwayError) as cm:
            spillway.offload(p, "host")
        self.assertIn("stay on the device", str(cm.exception))
        spillway.advise(p, None)
        with self.assertRaises(ValueError):
            spillway.offload(p, "tape")
        with self.assertRaises(spillway.SpillwayError) as cm:
            spillway.offload(p, "nvme")
        self.assertIn("SPILLWAY_NVME_PATH", str(cm.exception))
        buf = ctypes.create_string_buffer(64)
        with self.assertRaises(spillway.SpillwayError) as cm:
            spillway.offload(ctypes.addressof(buf), "host")
        self.assertIn("not allocated by Spillway", str(cm.exception))
        with self.assertRaises(TypeError):
            spillway.prefetch("p")
        lib.spillway_free(p, 8 << 20, 0, None)

    def test_summary(self):
        text = spillway.summary()
        self.assertIn("spillway summary (backend sim)", text)

    def test_torch_install_without_torch(self):
        try:
            import torch  # noqa: F401
            self.skipTest("PyTorch is installed here: install() is checked on the GPU machine")
        except ImportError:
            pass
        with self.assertRaises(ImportError):  # a plain ImportError naming torch, at import
            import spillway.torch  # noqa: F401


if __name__ == "__main__":
    unittest.main(verbosity=2)
