# _lib.py — finds and loads libspillway.so and declares the ctypes prototypes of the C API
# (include/spillway/spillway.h). The public Python API lives in __init__.py.
import ctypes
import ctypes.util
import os
import re

# Mirrors `struct spillway_stats` in include/spillway/spillway.h field by field, in order.
class SpillwayStats(ctypes.Structure):
    _fields_ = [
        ("allocated_bytes", ctypes.c_uint64),
        ("peak_allocated_bytes", ctypes.c_uint64),
        ("reserved_bytes", ctypes.c_uint64),
        ("peak_reserved_bytes", ctypes.c_uint64),
        ("internal_waste_bytes", ctypes.c_uint64),
        ("live_blocks", ctypes.c_uint64),
        ("alloc_count", ctypes.c_uint64),
        ("free_count", ctypes.c_uint64),
        ("oom_count", ctypes.c_uint64),
        ("chunk_create_count", ctypes.c_uint64),
        ("chunk_release_count", ctypes.c_uint64),
        ("map_count", ctypes.c_uint64),
        ("unmap_count", ctypes.c_uint64),
        ("budget_bytes", ctypes.c_uint64),
        ("granularity_bytes", ctypes.c_uint64),
    ]


# Mirrors `struct spillway_offload_stats` in include/spillway/spillway.h, in order.
class SpillwayOffloadStats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "host_bytes", "nvme_bytes", "host_pool_bytes", "evictions", "fetches", "prefetches",
        "stalls", "stall_ns", "cancelled", "errors", "bytes_to_host", "bytes_from_host",
        "bytes_to_nvme", "bytes_from_nvme", "fast_evictions", "remap_ns", "in_place",
        "in_place_returns", "alloc_ns", "make_room_ns", "free_ns", "launch_ns", "cpu_waits",
        "cpu_wait_ns", "create_ns", "release_ns", "map_ns", "access_ns", "unmap_ns",
        "access_calls", "pager_maps")]


# libspillway.so, or a versioned name of it (libspillway.so.0, libspillway.so.0.1).
_CORE_RE = re.compile(r"libspillway\.so(\.\d+)*")
_PRELOAD_RE = re.compile(r"libspillway_preload\.so(\.\d+)*")


def _mapped_in_process(name_re):
    """Real paths of the files mapped into this process whose name matches name_re."""
    found = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6 and name_re.fullmatch(os.path.basename(fields[5].strip())):
                found.add(os.path.realpath(fields[5].strip()))
    return sorted(found)


def _find_library():
    """What to pass to ctypes.CDLL. A copy already mapped into the process wins: loading a
    second copy would give a second allocator with its own (empty) statistics."""
    mapped = _mapped_in_process(_CORE_RE)
    if not mapped and _mapped_in_process(_PRELOAD_RE):
        raise RuntimeError(
            "spillway: libspillway_preload.so is loaded but no libspillway.so is; a separately "
            "loaded copy would be a second allocator whose statistics stay empty")
    if len(mapped) > 1:
        raise RuntimeError(
            "spillway: several copies of libspillway are loaded in this process: "
            + ", ".join(mapped) + "; each has its own allocator state, so load only one")
    explicit = os.environ.get("SPILLWAY_LIB")
    if mapped:
        if explicit and not (os.path.exists(explicit) and os.path.samefile(explicit, mapped[0])):
            raise RuntimeError(
                f"spillway: SPILLWAY_LIB={explicit} but this process already has {mapped[0]} "
                "loaded (through LD_PRELOAD?); a second copy would have separate allocator "
                "state. Point SPILLWAY_LIB at the loaded one, or unset it")
        return mapped[0]

    tried = []
    build = os.environ.get("SPILLWAY_BUILD")
    here = os.path.dirname(os.path.abspath(__file__))
    files = [
        ("$SPILLWAY_LIB", explicit or None),
        ("$SPILLWAY_BUILD/libspillway.so",
         os.path.join(os.path.abspath(build), "libspillway.so") if build else None),
        ("next to the package",
         os.path.normpath(os.path.join(here, "..", "..", "build", "libspillway.so"))),
    ]
    for what, path in files:
        if path is None:
            tried.append(f"{what}: not set")
        elif os.path.isfile(path):
            return path
        else:
            tried.append(f"{what}: {path} does not exist")
    # find_library answers with a name (e.g. libspillway.so.0) that the dynamic loader finds.
    name = ctypes.util.find_library("spillway")
    if name:
        return name
    tried.append("ctypes.util.find_library('spillway'): nothing found")
    raise RuntimeError(
        "spillway: cannot find libspillway.so. Tried, in order:\n  "
        + "\n  ".join(tried)
        + "\nBuild Spillway and set SPILLWAY_BUILD to the build folder, or SPILLWAY_LIB to the "
        "library's full path.")


def _declare(lib):
    """Argument and result types for every C function the package calls."""
    status = ctypes.c_int  # spillway_status (a C enum)
    protos = {
        "spillway_get_stats": (status, [ctypes.c_int, ctypes.POINTER(SpillwayStats)]),
        "spillway_reset_peak_stats": (status, [ctypes.c_int]),
        "spillway_set_budget": (status, [ctypes.c_int, ctypes.c_uint64]),
        "spillway_trim": (status, [ctypes.c_int, ctypes.c_uint64]),
        "spillway_device_count": (ctypes.c_int, []),
        "spillway_print_summary": (status, [ctypes.c_int]),
        "spillway_mark": (status, [ctypes.c_char_p]),
        "spillway_set_tracking": (status, [ctypes.c_int]),
        "spillway_offload": (status, [ctypes.c_void_p, ctypes.c_int]),
        "spillway_prefetch": (status, [ctypes.c_void_p, ctypes.c_void_p]),
        "spillway_advise": (status, [ctypes.c_void_p, ctypes.c_int]),
        "spillway_residency": (status, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]),
        "spillway_offload_synchronize": (status, [ctypes.c_int]),
        "spillway_get_offload_stats": (status, [ctypes.c_int,
                                                ctypes.POINTER(SpillwayOffloadStats)]),
        "spillway_last_error": (ctypes.c_char_p, []),
        "spillway_status_string": (ctypes.c_char_p, [status]),
    }
    for name, (restype, argtypes) in protos.items():
        try:
            fn = getattr(lib, name)
        except AttributeError as e:
            raise RuntimeError(f"spillway: {lib._name} does not export {name}: {e}") from e
        fn.restype = restype
        fn.argtypes = argtypes


def load():
    """(CDLL, real path of the loaded file) of the Spillway core library, prototypes declared."""
    name = _find_library()
    try:
        lib = ctypes.CDLL(name)
    except OSError as e:
        raise RuntimeError(f"spillway: found {name} but could not load it: {e}") from e
    mapped = _mapped_in_process(_CORE_RE)
    if len(mapped) != 1:
        raise RuntimeError(
            f"spillway: after loading {name}, expected exactly one libspillway in "
            f"/proc/self/maps, found {mapped or 'none'}")
    _declare(lib)
    return lib, mapped[0]
