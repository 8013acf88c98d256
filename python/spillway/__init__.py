# __init__.py — the Python binding of Spillway's C API (pure ctypes, no build step).
"""Spillway: statistics and controls of the Spillway GPU caching allocator, from Python.

Importing this package loads libspillway.so. Where it looks, in order:

1. a libspillway.so already loaded in this process (under ``spillway run`` or
   ``LD_PRELOAD=libspillway_preload.so``), so the numbers are those of the allocator in use;
2. ``$SPILLWAY_LIB`` (the library's full path);
3. ``$SPILLWAY_BUILD/libspillway.so``;
4. ``build/libspillway.so`` of the repository this package sits in;
5. ``ctypes.util.find_library("spillway")``.

If none is found, the import raises RuntimeError naming every place tried. Every call that
the C library answers with an error raises :class:`SpillwayError`.

To make PyTorch allocate through Spillway, see :mod:`spillway.torch`.
"""
import ctypes
import tempfile

from . import _lib

__all__ = [
    "SpillwayError",
    "stats",
    "reset_peak_stats",
    "set_budget",
    "trim",
    "device_count",
    "summary",
    "mark",
    "set_tracking",
    "library_path",
    "offload",
    "prefetch",
    "advise",
    "residency",
    "offload_synchronize",
    "offload_stats",
]

_LIB, _PATH = _lib.load()


class SpillwayError(RuntimeError):
    """A Spillway C API call failed. ``status`` is the spillway_status number, ``status_name``
    its spillway_status_string, ``detail`` the spillway_last_error message."""

    def __init__(self, call, status, status_name, detail):
        self.call = call
        self.status = status
        self.status_name = status_name
        self.detail = detail
        super().__init__(f"{call} failed: {status_name} (status {status}): {detail or 'no detail'}")


def _check(status, call):
    if status != 0:
        # spillway_last_error is per thread: read it right away, on the failing thread.
        detail = _LIB.spillway_last_error().decode("utf-8", "replace")
        name = _LIB.spillway_status_string(status).decode("utf-8", "replace")
        raise SpillwayError(call, status, name, detail)


def _device(device):
    if isinstance(device, bool) or not isinstance(device, int):
        raise TypeError(f"spillway: device must be an int, got {device!r}")
    if device < 0:
        raise ValueError(f"spillway: device must be >= 0, got {device}")
    return device


def _bytes(value, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"spillway: {what} must be an int number of bytes, got {value!r}")
    if not 0 <= value < 2**64:
        raise ValueError(f"spillway: {what} must be in [0, 2**64), got {value}")
    return value


def library_path():
    """Full path of the libspillway.so file this package uses."""
    return _PATH


def stats(device=0):
    """All fields of ``spillway_stats`` for ``device``, as a dict of ints (same names as in
    spillway.h: allocated_bytes, peak_allocated_bytes, reserved_bytes, ...)."""
    out = _lib.SpillwayStats()
    _check(_LIB.spillway_get_stats(_device(device), ctypes.byref(out)),
           f"spillway_get_stats(device={device})")
    return {name: getattr(out, name) for name, _ in _lib.SpillwayStats._fields_}


def reset_peak_stats(device=0):
    """Reset the high-water marks (peak_*) of ``device`` to the current values."""
    _check(_LIB.spillway_reset_peak_stats(_device(device)),
           f"spillway_reset_peak_stats(device={device})")


def set_budget(nbytes, device=0):
    """Cap the reserved device memory of ``device`` at ``nbytes`` (0 removes the cap).
    Raises SpillwayError (the old cap stays) if less than what is allocated now, or than the
    physical pages live blocks hold (a block holds whole pages)."""
    _check(_LIB.spillway_set_budget(_device(device), _bytes(nbytes, "budget")),
           f"spillway_set_budget(device={device}, bytes={nbytes})")


def trim(keep_bytes=0, device=0):
    """Return cached physical memory of ``device`` to the driver until at most ``keep_bytes``
    of cache remain."""
    _check(_LIB.spillway_trim(_device(device), _bytes(keep_bytes, "keep_bytes")),
           f"spillway_trim(device={device}, keep_bytes={keep_bytes})")


def device_count():
    """Number of devices Spillway manages (CUDA devices, or simulated ones)."""
    return _LIB.spillway_device_count()


def mark(label):
    """A phase mark (e.g. "forward", "step 12") in the SPILLWAY_TRACE event log, shown on the
    reports' timelines. A no-op when no trace is recorded; the label must be 1..4096 bytes."""
    if not isinstance(label, str):
        raise TypeError(f"spillway.mark: label must be a str, got {label!r}")
    _check(_LIB.spillway_mark(label.encode("utf-8")), "spillway_mark")


def set_tracking(on):
    """Pauses (False) or resumes (True) the tracker (SPILLWAY_TRACK=1): while paused, kernel
    launches, copies and sets are not recorded. Raises SpillwayError when tracking is not running
    or offload runs in tracked safety (it must see every launch)."""
    if not isinstance(on, bool):
        raise TypeError(f"spillway.set_tracking: on must be a bool, got {on!r}")
    _check(_LIB.spillway_set_tracking(1 if on else 0), "spillway_set_tracking")


_TIERS = {"device": 0, "host": 1, "nvme": 2}
_HINTS = {None: 0, "none": 0, "keep_on_device": 1, "evict_first": 2}


def _ptr(obj, what):
    """The device address of an int, or of anything with data_ptr() (a torch.Tensor)."""
    if hasattr(obj, "data_ptr"):
        obj = obj.data_ptr()
    if isinstance(obj, bool) or not isinstance(obj, int) or obj <= 0:
        raise TypeError(f"spillway.{what}: expected a device address or a tensor, got {obj!r}")
    return obj


def offload(block, tier="host"):
    """Move a block (its address, or a tensor whose storage starts a Spillway block) to
    ``tier``: "host" (queued; kernels can still read it), "nvme" (written before returning;
    prefetch before use) or "device". Only blocks spanning a whole 2 MiB page can move."""
    if tier not in _TIERS:
        raise ValueError(f"spillway.offload: tier must be one of {sorted(_TIERS)}, got {tier!r}")
    _check(_LIB.spillway_offload(_ptr(block, "offload"), _TIERS[tier]), f"spillway_offload({tier})")


def prefetch(block, stream=0):
    """Bring a block back to the device; work enqueued on ``stream`` (an int handle, or a
    torch.cuda.Stream) afterwards sees its data. The CPU does not wait."""
    if hasattr(stream, "cuda_stream"):
        stream = stream.cuda_stream
    _check(_LIB.spillway_prefetch(_ptr(block, "prefetch"), stream or None), "spillway_prefetch")


def advise(block, hint):
    """``hint``: "keep_on_device", "evict_first" or None (clear)."""
    if hint not in _HINTS:
        raise ValueError(f"spillway.advise: hint must be one of keep_on_device, evict_first, None; "
                         f"got {hint!r}")
    _check(_LIB.spillway_advise(_ptr(block, "advise"), _HINTS[hint]), "spillway_advise")


def residency(block):
    """Where a block is now: "device", "host" or "nvme"."""
    out = ctypes.c_int(-1)
    _check(_LIB.spillway_residency(_ptr(block, "residency"), ctypes.byref(out)),
           "spillway_residency")
    return {v: k for k, v in _TIERS.items()}[out.value]


def offload_synchronize(device=0):
    """Wait for every move in flight on ``device``."""
    _check(_LIB.spillway_offload_synchronize(_device(device)), "spillway_offload_synchronize")


def offload_stats(device=0):
    """``spillway_offload_stats`` of ``device`` as a dict (host_bytes, evictions, stalls...)."""
    out = _lib.SpillwayOffloadStats()
    _check(_LIB.spillway_get_offload_stats(_device(device), ctypes.byref(out)),
           f"spillway_get_offload_stats(device={device})")
    return {name: getattr(out, name) for name, _ in _lib.SpillwayOffloadStats._fields_}


def summary():
    """The human-readable summary (the one printed at exit with SPILLWAY_STATS=1)."""
    with tempfile.TemporaryFile() as f:
        _check(_LIB.spillway_print_summary(f.fileno()), "spillway_print_summary")
        f.seek(0)  # the C side wrote through the descriptor; rewind and read it all
        return f.read().decode("utf-8", "replace")
