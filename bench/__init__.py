"""Benchmarks (``make bench``; see BENCHMARKS.md).

``video_assets`` is imported first so that its process settings (OMP_WAIT_POLICY) apply before any benchmark
module imports torch, exactly as in the pipeline."""

import video_assets  # noqa: F401
