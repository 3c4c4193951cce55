"""The manifest as the pipeline holds it: :class:`Manifest` (one row per manifest line, the core columns
first), the error raised for a manifest that cannot be read, and which rows are processed
(:func:`unique_rows`).

The format readers (:mod:`.formats`), the row checks (:mod:`.rows`) and the partition keys (:mod:`.keys`) build
on these types; :func:`video_assets.pipeline.manifests.read_manifest` ties them together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from video_assets.errors import VideoAssetsError

# Columns every manifest table has, in this order (user columns follow).
CORE_COLUMNS = ("row", "video_id", "uri", "source_uri", "duplicate_of", "query", "error")
# A malformed line's row has this uri (and its reason in ``error``).
INVALID_URI = ""


class ManifestError(VideoAssetsError, ValueError):
    """A manifest cannot be read or has malformed lines; the message names the manifest and the lines."""


@dataclass
class Manifest:
    """A parsed manifest. ``frame`` has :data:`CORE_COLUMNS` then ``user_columns``; ``user_names``: those
    columns' names as the manifest spells them (the same, except a column named like a core column, which
    the frame carries as ``user_<name>``). The tables keep the manifest's names (see ``tables.user_json``)."""

    uri: str
    format: str
    frame: pd.DataFrame
    user_columns: list[str]
    sha256: str
    warnings: list[str] = field(default_factory=list)
    user_names: list[str] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return len(self.frame)

    @property
    def num_duplicates(self) -> int:
        return int(self.frame["duplicate_of"].notna().sum())

    @property
    def num_invalid(self) -> int:
        """Malformed lines (rows with ``error`` set; never processed)."""
        return int((self.frame["uri"] == INVALID_URI).sum())

    @property
    def unique(self) -> pd.DataFrame:
        """One row per distinct video, in manifest order."""
        return unique_rows(self.frame)


def unique_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows to process: neither duplicates nor malformed lines (a manifest frame or a manifest table)."""
    return frame[frame["duplicate_of"].isna() & (frame["uri"] != INVALID_URI)].reset_index(drop=True)

