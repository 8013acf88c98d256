# torch.py — plugs Spillway into PyTorch as its CUDA allocator (CUDAPluggableAllocator).
"""Make PyTorch allocate CUDA memory through Spillway, in-process.

    import spillway.torch
    spillway.torch.install()          # before any CUDA work
    model = Model().cuda()            # allocations now go through spillway_malloc/spillway_free

This is the in-process alternative to running the unmodified program under
``spillway run -- python train.py``. PyTorch's own memory statistics
(torch.cuda.max_memory_allocated() and the like) are not available with a pluggable
allocator; read :func:`spillway.stats` instead.
"""
import torch

from . import device_count, library_path, set_budget

__all__ = ["install", "is_installed"]

_installed = False


def install(device_budget=None):
    """Make Spillway PyTorch's CUDA allocator. Must run before CUDA is initialized.

    device_budget: if given, an int number of bytes: the reserved-memory cap set on every
    device Spillway manages (see spillway.set_budget). Calling install() again only applies
    a new budget.
    """
    global _installed
    if device_budget is not None and (isinstance(device_budget, bool)
                                      or not isinstance(device_budget, int)):
        raise TypeError(f"spillway.torch.install: device_budget must be an int number of bytes "
                        f"or None, got {device_budget!r}")
    if not _installed:
        if torch.cuda.is_initialized():
            raise RuntimeError(
                "spillway.torch.install() was called after CUDA was initialized in this process; "
                "PyTorch cannot swap its allocator then. Call install() before any CUDA work "
                "(before creating CUDA tensors, .cuda()/.to('cuda'), or torch.cuda calls that "
                "initialize CUDA), or run the unmodified program under "
                "`spillway run -- python ...` instead.")
        allocator = torch.cuda.memory.CUDAPluggableAllocator(
            library_path(), "spillway_malloc", "spillway_free")
        try:
            torch.cuda.memory.change_current_allocator(allocator)
        except RuntimeError as e:
            raise RuntimeError(
                f"spillway.torch.install(): PyTorch refused to switch to Spillway's allocator: {e}. "
                "Call install() before anything allocates CUDA memory, or use `spillway run`.") from e
        _installed = True
    if device_budget is not None:
        count = device_count()
        if count < 1:
            raise RuntimeError(f"spillway.torch.install: cannot set device_budget: Spillway "
                               f"manages {count} devices")
        for device in range(count):
            set_budget(device_budget, device)


def is_installed():
    """True once install() has made Spillway PyTorch's CUDA allocator in this process."""
    return _installed
