"""Where a streamed video's image features are kept until its last frame is encoded: rows of large slabs.

The features of each model batch are the one allocation of the model thread that outlives the batch (until the
video is finished). Kept as the model returned them, each batch left a small block in the middle of the heap
region that the next forward pass reuses, and the process grew with every batch, not with what it held: quality
at every frame of 5 min of 720p left 82 MB of free holes in glibc's main heap and its RSS kept rising (+7 MB
per 1,000 frames) while the frames held and the bytes in use stayed flat. Copied into slabs of
``SLAB_ROWS`` rows, the features take a few large blocks and the heap of the model thread is the same at every
batch: the same run stays within 2 MB of its first minute.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Rows per slab: 4,096 x 768 float32 features (ViT-L/14) are 12.6 MB; tiny's 64-wide ones 1 MB.
SLAB_ROWS = 4096


class FeatureSlabs:
    """``embed`` whose results (through ``keep``, the stage's :meth:`~video_assets.operators.stage.Stage.per_frame`,
    when given) are copied into consecutive rows of slabs (a new slab when one is full).

    Each call returns a view of its own rows, never written again, so the features stay valid as long as they
    are referenced; a slab is freed when no view of it is left. One instance per run, called from one thread
    (the model's).

    :attr:`input_reusable`: after a call, whether the batch it was given may be overwritten now (the overlapped
    loop then gathers the next batch into the same array): the features were copied out of the forward pass,
    and the input was read by the CPU, or copied to a CUDA device from pageable memory, which returns only once
    the source has been read. Other devices: False (a non-blocking copy may still be reading it).
    """

    input_reusable = False

    def __init__(self, embed: Callable[[torch.Tensor], torch.Tensor],
                 keep: Callable[[torch.Tensor], torch.Tensor] | None = None, rows: int = SLAB_ROWS):
        self.embed, self.keep, self.rows = embed, keep, rows
        self._slab: torch.Tensor | None = None
        self._used = 0

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        feats = self.embed(pixels)
        if self.keep is not None:
            feats = self.keep(feats)
        n = feats.shape[0]
        slab = self._slab
        if (slab is None or self._used + n > slab.shape[0] or slab.shape[1:] != feats.shape[1:]
                or slab.dtype != feats.dtype or slab.device != feats.device):
            slab = self._slab = torch.empty((max(self.rows, n), *feats.shape[1:]), dtype=feats.dtype,
                                            device=feats.device)
            self._used = 0
        out = slab[self._used:self._used + n]
        out.copy_(feats)
        self._used += n
        self.input_reusable = pixels.device.type == "cpu" and feats.device.type in ("cpu", "cuda")
        return out
