"""Pictures and small summaries of a table, for people: a score histogram, a keyframe contact sheet (PNG),
markdown tables of errors and of the first rows. No Dagster here; the assets wrap these in metadata."""

from __future__ import annotations

import base64
import io
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from video_assets.storage import describe_uri, filesystem_for
from video_assets.storage.uri import is_local, strip_file_scheme

log = logging.getLogger(__name__)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def histogram_png(values: Sequence[float], bins: int = 10, lo: float = 0.0, hi: float = 1.0,
                  title: str = "quality_score", width: int = 420, height: int = 200) -> bytes:
    """A bar chart of ``values`` over [lo, hi] with counts on the bars."""
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    counts, edges = np.histogram(np.clip(vals, lo, hi), bins=bins, range=(lo, hi))
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    f, fs = _font(12), _font(10)
    left, right, top, bottom = 34, 10, 22, 28
    pw, ph = width - left - right, height - top - bottom
    d.text((left, 4), f"{title}  (n={len(vals)}" + (f", mean={vals.mean():.3f})" if len(vals) else ")"),
           fill="black", font=f)
    d.line([(left, top), (left, top + ph), (left + pw, top + ph)], fill="black")
    peak = max(int(counts.max()) if len(counts) else 0, 1)
    bw = pw / bins
    for i, c in enumerate(counts):
        x0, x1 = left + i * bw + 1, left + (i + 1) * bw - 1
        y0 = top + ph - (c / peak) * (ph - 12)
        if c:
            d.rectangle([x0, y0, x1, top + ph - 1], fill=(66, 110, 200))
            d.text(((x0 + x1) / 2 - 4, y0 - 12), str(int(c)), fill="black", font=fs)
    for i in range(0, bins + 1, max(1, bins // 5)):
        x = left + i * bw
        d.line([(x, top + ph), (x, top + ph + 3)], fill="black")
        d.text((x - 8, top + ph + 5), f"{edges[i]:.1f}", fill="black", font=fs)
    d.text((4, top), str(peak), fill="black", font=fs)
    d.text((10, top + ph - 10), "0", fill="black", font=fs)
    return _png(img)


# Dagster's UI renders markdown metadata inline only when it is shorter than this many characters; longer
# markdown is behind a "[Show Markdown]" link that opens it in a dialog.
UI_INLINE_MARKDOWN_CHARS = 1000


def mini_histogram_png(values: Sequence[float], bins: int = 10, lo: float = 0.0, hi: float = 1.0,
                       width: int = 240, height: int = 56) -> bytes:
    """A label-free bar chart small enough (a few hundred bytes: 2-bit palette PNG) to sit inline in the
    UI."""
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    counts, _ = np.histogram(np.clip(vals, lo, hi), bins=bins, range=(lo, hi))
    img = Image.new("P", (width, height), 0)
    img.putpalette([255, 255, 255, 66, 110, 200, 120, 120, 120] + [0] * (256 - 3) * 3)
    d = ImageDraw.Draw(img)
    peak = max(int(counts.max()) if len(counts) else 0, 1)
    bw = width / bins
    for i, c in enumerate(counts):
        if c:
            d.rectangle([int(i * bw) + 1, height - 2 - round(c / peak * (height - 4)), int((i + 1) * bw) - 1,
                         height - 2], fill=1)
    d.line([(0, height - 1), (width - 1, height - 1)], fill=2)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True, bits=2)
    return buf.getvalue()


def inline_histogram_markdown(values: Sequence[float], bins: int = 10, lo: float = 0.0,
                              hi: float = 1.0) -> str:
    """Markdown with a tiny histogram image and its range/counts, shorter than UI_INLINE_MARKDOWN_CHARS."""
    vals = [v for v in values if v is not None and np.isfinite(v)]
    counts, _ = np.histogram(np.clip(vals, lo, hi), bins=bins, range=(lo, hi)) if vals else ([0] * bins, None)
    text = f"\n\n{lo:g} … {hi:g}, {bins} bins: {' '.join(str(int(c)) for c in counts)} (n={len(vals)})"
    for width, height in ((240, 56), (150, 36), (90, 20)):
        md = markdown_image(mini_histogram_png(vals, bins, lo, hi, width, height), "histogram") + text
        if len(md) < UI_INLINE_MARKDOWN_CHARS:
            return md
    return text.strip()


def contact_sheet_png(rows: Iterable[tuple], storage_options: dict | None = None,
                      thumb_height: int = 54, per_video: int = 8, max_videos: int = 6, label_width: int = 110
                      ) -> bytes | None:
    """One row per video: its label, then up to ``per_video`` keyframe thumbnails read from their paths, each
    captioned with its timestamp. ``rows``: (label, paths) or (label, paths, timestamps). None when no image
    could be read. The sheet is stored with a 256-colour palette to stay small."""
    strips = []
    for row in rows:
        label, paths = row[0], list(row[1])
        times = list(row[2]) if len(row) > 2 and row[2] is not None else [None] * len(paths)
        if len(strips) >= max_videos:
            break
        thumbs = []
        for p, t in list(zip(paths, times))[:per_video]:
            try:
                fs, path = filesystem_for(p, storage_options)
                with fs.open(path, "rb") as fh:
                    im = Image.open(io.BytesIO(fh.read()))
                    # JPEG: decode at a reduced scale (1/2..1/8) close to the thumbnail, not at full size
                    im.draft("RGB", (max(1, im.width * thumb_height // max(im.height, 1)), thumb_height))
                    im = im.convert("RGB")
                w = max(1, round(im.width * thumb_height / max(im.height, 1)))
                thumb = im.resize((w, thumb_height), Image.BILINEAR)
                if t is not None:
                    td = ImageDraw.Draw(thumb)
                    caption = f"{float(t):.1f}s"
                    td.rectangle([0, thumb_height - 12, 6 * len(caption) + 4, thumb_height], fill=(0, 0, 0))
                    td.text((2, thumb_height - 12), caption, fill="white", font=_font(10))
                thumbs.append(thumb)
            except Exception as e:  # noqa: BLE001 - a missing image is shown as a gap, the check reports it
                log.warning("contact sheet: cannot read %s: %s", describe_uri(p), e)
        if thumbs:
            strips.append((label, thumbs))
    if not strips:
        return None
    gap = 3
    width = label_width + max(sum(t.width + gap for t in th) for _, th in strips)
    height = len(strips) * (thumb_height + gap) + gap
    sheet = Image.new("RGB", (width, height), (245, 245, 245))
    d = ImageDraw.Draw(sheet)
    f = _font(11)
    for i, (label, thumbs) in enumerate(strips):
        y = gap + i * (thumb_height + gap)
        d.text((4, y + thumb_height // 2 - 6), label[:16], fill="black", font=f)
        x = label_width
        for t in thumbs:
            sheet.paste(t, (x, y))
            x += t.width + gap
    return _png(sheet.quantize(colors=256, method=Image.Quantize.FASTOCTREE))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def markdown_image(png: bytes, alt: str = "") -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def _cell(v) -> str:
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.4f}"
    if v is None or (not isinstance(v, (list, tuple, np.ndarray, dict)) and pd.isna(v)):
        return ""
    if isinstance(v, (list, tuple, np.ndarray)):
        items = [f"{x:.3f}" if isinstance(x, float) else str(x) for x in list(v)[:6]]
        return "[" + ", ".join(items) + (", …" if len(v) > 6 else "") + "]"
    s = str(v)
    return (s[:77] + "…" if len(s) > 80 else s).replace("|", "\\|").replace("\n", " ")


def preview_records(frame: pd.DataFrame, columns: Sequence[str], limit: int = 10) -> list[dict]:
    """The first rows as plain values (lists shortened, errors without the video's name) for a preview
    table."""
    cols = [c for c in columns if c in frame.columns]
    out = []
    for _, r in frame.head(limit).iterrows():
        rec = {}
        for c in cols:
            v = r[c]
            if c == "error" and isinstance(v, str):
                v = error_reason(v, r.get("uri"))
                v = v[:77] + "…" if len(v) > 80 else v
            elif isinstance(v, (list, tuple, np.ndarray)):
                v = _cell(v).replace(",", "")
            elif isinstance(v, (float, np.floating)):
                v = None if np.isnan(v) else round(float(v), 4)
            elif isinstance(v, (np.integer,)):
                v = int(v)
            elif isinstance(v, (np.bool_,)):
                v = bool(v)
            elif v is not None and not isinstance(v, (str, int, bool)):
                v = None if pd.isna(v) else str(v)
            rec[c] = v
        out.append(rec)
    return out


def markdown_table(frame: pd.DataFrame, columns: Sequence[str], limit: int = 10) -> str:
    cols = [c for c in columns if c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in frame.head(limit).iterrows():
        lines.append("| " + " | ".join(_cell(r[c]) for c in cols) + " |")
    if len(frame) > limit:
        lines.append(f"\n… {len(frame) - limit} more rows")
    return "\n".join(lines)


def error_reason(error: str, uri: str | None = None) -> str:
    """An error message without the video's own name, so equal causes group together."""
    s = str(error)
    for name in filter(None, {uri, describe_uri(uri) if uri else None}):
        s = s.replace(name, "")
    s = re.sub(r"^[:\s]+", "", s)
    return s or str(error)


def top_errors(frame: pd.DataFrame, limit: int = 5) -> list[tuple[str, int, str]]:
    """(reason, count, an example video_id) for the most frequent error reasons."""
    bad = frame[frame["error"].notna()]
    if bad.empty:
        return []
    reasons = [error_reason(e, u) for e, u in zip(bad["error"], bad["uri"])]
    counts = Counter(reasons)
    example = {}
    for r, vid in zip(reasons, bad["video_id"]):
        example.setdefault(r, vid)
    return [(r, n, example[r]) for r, n in counts.most_common(limit)]


def errors_markdown(frame: pd.DataFrame, limit: int = 5) -> str:
    rows = top_errors(frame, limit)
    if not rows:
        return "no errors"
    lines = ["| reason | videos | example |", "|---|---|---|"]
    lines += [f"| {_cell(r)} | {n} | {_cell(v)} |" for r, n, v in rows]
    return "\n".join(lines)


# When most failures share a cause a person can fix in one place, say which and how (README "Loud failures").
_CREDENTIALS = re.compile(r"(?i)NoCredentialsError|Unable to locate credentials|access denied|"
                          r"InvalidAccessKeyId|SignatureDoesNotMatch|ExpiredToken|HTTP 40[13]\b")
_NOT_FOUND = re.compile(r"(?i)file not found|not found \(404 or no such object\)|No such file")


def _folder(uri: str) -> str:
    if not is_local(uri):
        return describe_uri(uri).rsplit("/", 1)[0] + "/"
    return os.path.dirname(strip_file_scheme(uri)) + os.sep


def common_cause(frame: pd.DataFrame, min_share: float = 0.5) -> str | None:
    """One line naming the cause shared by more than ``min_share`` of the failed rows of a table (``error``,
    ``uri``) and its fix: files not found under one folder, sources the policy does not allow, missing or
    refused credentials, else one error reason. None when there are no failures or no common cause."""
    bad = frame[frame["error"].notna()]
    if bad.empty:
        return None
    errors, uris = [str(e) for e in bad["error"]], [str(u) for u in bad["uri"]]
    n = len(errors)

    def most(keys: list) -> tuple[object, int]:
        (key, count), = Counter(keys).most_common(1)
        return key, count

    folder, count = most([_folder(u) if _NOT_FOUND.search(e) else None for e, u in zip(errors, uris)])
    if folder is not None and count > min_share * n:
        return (f"{count} of {n} failures: file not found under {folder} (relative paths in a manifest "
                "resolve against the manifest's folder); fix the paths in the manifest or put the videos "
                "there")
    count = sum("source not allowed" in e for e in errors)
    if count > min_share * n:
        return (f"{count} of {n} failures: source not allowed by the source policy; allow the folders with "
                "VIDEO_ASSETS_ALLOWED_ROOTS (buckets: VIDEO_ASSETS_ALLOWED_BUCKETS, hosts: the warehouse "
                "resource's allowed_hosts), see docs/security.md")
    count = sum(bool(_CREDENTIALS.search(e)) for e in errors)
    if count > min_share * n:
        return (f"{count} of {n} failures: missing or refused credentials; set AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY (tos://: TOS_ACCESS_KEY/TOS_SECRET_KEY) for the process that runs the "
                "step")
    reason, count = most([error_reason(e, u) for e, u in zip(errors, uris)])
    if count > min_share * n and n > 1:
        return f"{count} of {n} failures share one reason: {reason}"
    return None
