"""Arrays in their own anonymous memory mapping, for large frames that outlive the thread that made them."""

from __future__ import annotations

import mmap

import numpy as np

# Pages faulted in by the one mmap call where the OS can (Linux): 0.85 ms for a 720p frame, against 1.9 ms
# when the copy faults them in one by one.
_PREFAULTED = ({"flags": mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE}
               if hasattr(mmap, "MAP_POPULATE") else {})


def mapped_array(shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
    """A writable, zero-filled array in its own ``mmap``: its pages go back to the OS as soon as the last reference
    dies.

    Why not ``np.empty``: glibc raises its mmap threshold to the size of every mmapped block that is freed, so
    after the first few keyframes, each 2.8 MB 720p frame comes from the heap of the thread that decoded it. A
    caller keeps it for as long as it likes and frees it from another thread, and small lasting allocations land
    between these blocks in the meantime: the heaps fill with free space that is never returned (+0.2 MB per
    video over 1,000 videos, with the bytes in use flat). A mapping of its own is not part of any heap. The
    cost is one ``mmap``/``munmap`` per array and its fresh pages: about 0.85 ms for a 720p frame. Where the
    kernel refuses another mapping (``vm.max_map_count``, 65,530 by default), the array comes from ``np.zeros``.
    """
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if size == 0:
        return np.zeros(shape, dtype)
    try:
        buf = mmap.mmap(-1, size, **_PREFAULTED)
    except OSError:
        return np.zeros(shape, dtype)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)
