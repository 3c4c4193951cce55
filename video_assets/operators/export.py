"""Writing selected keyframes as images: :class:`KeyframeExporter` (the output folder, image format and
naming) and the checks of the output folder made when an operator is built."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from video_assets.errors import VideoSourceError
from video_assets.operators.common import VideoInput, VideoOpener
from video_assets.storage import join_uri, write_bytes
from video_assets.storage.uri import scheme_of, strip_file_scheme

IMG_TYPES = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


@dataclass(frozen=True)
class KeyframeExporter:
    """Decodes selected frames again and writes them to ``{output_tos_dir}/{video_id}/{frame_id:06d}-{hash}
    {img_type}``; picklable. ``return_keyframes``: also return the arrays."""

    output_tos_dir: str
    img_type: str
    jpeg_quality: int
    storage_options: dict | None
    return_keyframes: bool

    @property
    def exporting(self) -> bool:
        return bool(self.output_tos_dir) or self.return_keyframes

    def export(self, opener: VideoOpener, item: VideoInput, frame_ids: list[int]
               ) -> tuple[list[str], list[np.ndarray]]:
        """Fetch the selected frames again (a seek each; cheaper than holding every candidate at full size),
        encode and write each as it comes (so an export holds one decoded frame, not all of a video's); returns
        (paths, arrays when ``return_keyframes``)."""
        paths: dict[int, str] = {}
        arrays: dict[int, np.ndarray] = {}
        with opener.open(item) as reader:
            for pos, rgb in reader.fetch(np.asarray(frame_ids)):
                if self.output_tos_dir:
                    paths[pos] = self.write_image(item, pos, rgb)
                if self.return_keyframes:
                    arrays[pos] = rgb
        missing = [f for f in frame_ids if f not in (paths if self.output_tos_dir else arrays)]
        if missing:
            raise VideoSourceError(f"{item.description}: selected frames {missing[:5]} could not be decoded again")
        return [paths[f] for f in frame_ids if f in paths], [arrays[f] for f in frame_ids if f in arrays]

    def write_image(self, item: VideoInput, frame_id: int, rgb: np.ndarray) -> str:
        data = self.encode_image(rgb)
        # Content-addressed name: rewriting the same image gives the same path, but other bytes (other
        # jpeg_quality, a re-uploaded video under the same URI) never overwrite an image that an older table
        # still points at, e.g. when a re-materialisation is killed half-way.
        name = f"{frame_id:06d}-{hashlib.sha1(data).hexdigest()[:10]}{self.img_type}"
        uri = join_uri(self.output_tos_dir, item.video_id, name)
        write_bytes(uri, data, self.storage_options)
        return uri

    def encode_image(self, rgb: np.ndarray) -> bytes:
        buf = io.BytesIO()
        fmt = IMG_TYPES[self.img_type]
        kwargs = {"quality": self.jpeg_quality} if fmt == "JPEG" else {"optimize": False}
        Image.fromarray(rgb).save(buf, format=fmt, **kwargs)
        return buf.getvalue()


def check_writable(d: str) -> None:
    """A local output folder that cannot be written fails here, naming it, instead of every video failing
    later; object stores are checked by the first write (no request is made here)."""
    if not d or scheme_of(d) not in ("", "file"):
        return
    probe = strip_file_scheme(d)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)  # the nearest existing folder: where the first image creates its own
    if not os.path.isdir(probe):
        raise ValueError(f"output_tos_dir {d!r} cannot be created: {probe!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"output_tos_dir {d!r} is not writable ({probe!r} does not allow writing)")


def absolute_dir(d: str) -> str:
    d = os.fspath(d)
    if scheme_of(d) in ("", "file"):
        path = strip_file_scheme(d)
        path = os.path.abspath(os.path.expanduser(path))
        return "file://" + path if d.startswith("file://") else path
    return d.rstrip("/")
