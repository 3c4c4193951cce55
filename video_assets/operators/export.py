"""Writing selected keyframes as images: :class:`KeyframeExporter` (the output folder, image format and
naming), the checks of the output folder made when an operator is built (:func:`check_output_dir`), and the
errors of a failed write, which name the output and its problem (:func:`write_problem`)."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass

import numpy as np
from PIL import Image

from video_assets.errors import OutputWriteError, VideoSourceError
from video_assets.operators.common import VideoInput, VideoOpener
from video_assets.storage import join_uri, write_bytes
from video_assets.storage.uri import bucket_of, describe_uri, is_local, redact_text, scheme_of, strip_file_scheme

IMG_TYPES = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
# Where keyframes can be written (storage.write_bytes): a local folder or file://, s3:// (s3a://) or tos://.
OUTPUT_SCHEMES = ("", "file", "s3", "s3a", "tos")
_OBJECT_STORES = ("s3", "s3a", "tos")


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
        try:
            write_bytes(uri, data, self.storage_options)
        except Exception as e:  # noqa: BLE001 - whatever the store raised, the output is at fault, not the input
            reason = write_problem(e, uri)
            raise OutputWriteError(f"cannot write keyframes to {describe_uri(uri)}: {reason}",
                                   self.output_tos_dir, reason) from e
        return uri

    def encode_image(self, rgb: np.ndarray) -> bytes:
        buf = io.BytesIO()
        fmt = IMG_TYPES[self.img_type]
        kwargs = {"quality": self.jpeg_quality} if fmt == "JPEG" else {"optimize": False}
        Image.fromarray(rgb).save(buf, format=fmt, **kwargs)
        return buf.getvalue()


def check_output_dir(d: str) -> None:
    """An ``output_tos_dir`` that can never be written fails here, naming it, instead of every video failing
    later: a scheme keyframes cannot be written to, an object-store URI without a bucket, a local folder that
    cannot be created or written. Object stores make no request here (a bucket cannot be checked cheaply, and
    operators are built where no request should be made, e.g. a Daft UDF's ``__init__``): their first write
    says what is wrong."""
    if not d:
        return
    scheme = scheme_of(d)
    if scheme not in OUTPUT_SCHEMES:
        raise ValueError(f"output_tos_dir {describe_uri(d)!r}: keyframes cannot be written to {scheme}:// URIs; "
                         "use a local folder, file://, s3:// or tos://")
    if scheme in _OBJECT_STORES:
        if not bucket_of(d):
            raise ValueError(f"output_tos_dir names no bucket: expected {scheme}://bucket/prefix")
        return
    probe = strip_file_scheme(d)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)  # the nearest existing folder: where the first image creates its own
    if not os.path.isdir(probe):
        raise ValueError(f"output_tos_dir {d!r} cannot be created: {probe!r} is a file, not a folder")
    # Creating something there is the one test that holds for every user (root passes os.access anywhere,
    # also where nothing can be created, such as /proc) and for read-only mounts; the probe is removed at once.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".video_assets-probe-", dir=probe))
    except OSError as e:
        raise ValueError(f"output_tos_dir {d!r} is not writable: nothing can be created in {probe!r} "
                         f"({e.strerror or e})") from None


def write_problem(e: BaseException, uri: str) -> str:
    """What went wrong writing ``uri``, in words, without credentials."""
    if not is_local(uri):
        if isinstance(e, FileNotFoundError) and "bucket" in str(e).lower():
            return f"bucket {bucket_of(uri)!r} does not exist"
        if isinstance(e, PermissionError):
            return f"access denied ({redact_text(str(e))})"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror + (f" ({e.filename!r})" if e.filename else "")
    return redact_text(f"{type(e).__name__}: {e}")


def absolute_dir(d: str) -> str:
    d = os.fspath(d)
    if scheme_of(d) in ("", "file"):
        path = strip_file_scheme(d)
        path = os.path.abspath(os.path.expanduser(path))
        return "file://" + path if d.startswith("file://") else path
    scheme, sep, rest = d.partition("://")
    return scheme + sep + rest.rstrip("/")  # "s3://" stays a URI (without a bucket), never a local "s3:"
