"""mapped_array: a zero-filled writable array in its own mapping, and a heap array where no mapping is left."""

import mmap

import numpy as np

from video_assets.video import mapped
from video_assets.video.mapped import mapped_array


def test_an_array_in_its_own_mapping():
    a = mapped_array((3, 5, 3))
    assert a.shape == (3, 5, 3) and a.dtype == np.uint8 and not a.any()
    owner = a.base.base.obj  # the reshaped view -> np.frombuffer's array -> its memoryview -> the mapping
    assert isinstance(owner, mmap.mmap) and len(owner) == a.nbytes
    a[1, 2] = (1, 2, 3)
    assert a.sum() == 6


def test_empty_and_refused_mappings_give_plain_arrays(monkeypatch):
    assert mapped_array((0, 4, 3)).shape == (0, 4, 3)

    def refuse(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(mapped.mmap, "mmap", refuse)
    a = mapped_array((2, 2), np.float32)
    assert a.shape == (2, 2) and a.dtype == np.float32 and not a.any() and a.base is None
