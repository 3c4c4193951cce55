"""The UI in a real browser: ``dagster dev`` on 127.0.0.1 (temporary DAGSTER_HOME and warehouse), the demo
manifest materialised the way the UI's Materialize button does it, a partition of only missing videos run too,
then the asset pages opened in headless Chromium (Debian's ``chromium``, driven by Playwright's Python package
with the system browser's executable; no browser download). It checks what a person looks for: the row count,
``failed_share``, the preview table, the score histogram image, the keyframe contact sheet, and that the bad
partition is counted as failed. Screenshots go to the test's tmp folder; ``VIDEO_ASSETS_UPDATE_SCREENSHOT=1``
also writes ``docs/ui_quality_scores.png`` from them.

Without Chromium or Playwright the test skips and says why; on CI (``CI=true``) it fails instead, as CI must
run it (``.ci/run`` installs both)."""

import os
import shutil
from pathlib import Path

import pytest

from video_assets.cli import launch_remote
from video_assets.pipeline.registry import ManifestRegistry
from video_assets_tests.dagster_dev import REPO, dagster_dev
from video_assets_tests.pipeline_helpers import write_atomic

ASSET_PATHS = [["video_manifest"], ["video_quality_scores"], ["video_keyframes"]]
CHROMIUM_ENV = "VIDEO_ASSETS_CHROMIUM"  # a browser executable other than the system's chromium


def _browser() -> str:
    """The Chromium executable, or skip (fail on CI) saying what is missing and how to install it."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = ("Playwright's Python package is not installed (pip install playwright; no browser "
                   "download needed)")
    exe = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")
    if problem is None and not exe:
        problem = (f"no Chromium found (Debian: apt-get install -y chromium; or set {CHROMIUM_ENV} to a "
                   "Chromium executable)")
    if problem:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI must run the browser test: {problem}")
        pytest.skip(problem)
    return exe


def _open(page, url: str, wait_text: str) -> None:
    page.goto(url)
    page.get_by_text(wait_text, exact=True).first.wait_for(timeout=60_000)


def _image_loaded(locator) -> bool:
    return bool(locator.evaluate("img => img.complete && img.naturalWidth > 0"))


def _compose(top: Path, bottom: Path, caption: str, out: Path) -> None:
    """docs/ui_quality_scores.png: the quality page, and below it the keyframes' contact sheet dialog."""
    from PIL import Image, ImageDraw, ImageFont

    a, b = Image.open(top).convert("RGB"), Image.open(bottom).convert("RGB")
    gap = 30
    img = Image.new("RGB", (max(a.width, b.width), a.height + gap + b.height), "white")
    img.paste(a, (0, 0))
    img.paste(b, (0, a.height + gap))
    try:
        font = ImageFont.load_default(size=18)
    except TypeError:
        font = ImageFont.load_default()
    ImageDraw.Draw(img).text((16, a.height + 4), caption, fill="black", font=font)
    img.save(out, optimize=True)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_ui_shows_the_metadata_and_a_failed_partition(tmp_path):
    exe = _browser()
    from playwright.sync_api import sync_playwright

    warehouse, inbox = tmp_path / "warehouse", tmp_path / "inbox"
    # the demo manifest as it is (its paths resolve to data/samples/, which the source policy allows) ...
    demo_key, _ = ManifestRegistry(str(warehouse)).register_file(str(REPO / "data" / "demo_manifest.csv"))
    # ... and a manifest whose videos are all missing: the inbox trap of a copied manifest with wrong paths
    bad = write_atomic(tmp_path / "elsewhere" / "all_missing.csv", "uri\nclips/one.mp4\nclips/two.mp4\n")
    bad_key, _ = ManifestRegistry(str(warehouse)).register_file(str(bad))
    env = {"VIDEO_ASSETS_WAREHOUSE": str(warehouse), "VIDEO_ASSETS_INBOX": str(inbox),
           "VIDEO_ASSETS_CLIP_MODEL": "video-assets/tiny-clip", "HF_HUB_OFFLINE": "1",
           "AWS_EC2_METADATA_DISABLED": "true", "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with dagster_dev(tmp_path / "dagster_home", env) as server:
        server.wait_loaded()
        server.add_partition("video_manifests", demo_key)
        good_run = server.materialize(ASSET_PATHS, demo_key)  # the UI's Materialize button
        assert server.wait_run(good_run) == "SUCCESS", server.run_failure_messages(good_run)
        # `python -m video_assets add-manifest PATH --url URL`: adds the partition and launches its run
        bad_run = launch_remote(server.url, bad_key)
        assert server.wait_run(bad_run) == "FAILURE"
        assert "file not found under" in server.run_failure_messages(bad_run)

        # what "Skip" on the first visit's "Join the Dagster community" dialog records (it covers the page)
        server.gql("mutation { setNuxSeen }")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
            try:
                # tall enough for the whole metadata table: the UI scrolls inside its own panel, not the page
                page = browser.new_page(viewport={"width": 1700, "height": 2100})
                # the partitions of video_quality_scores: the demo materialised, the bad one failed (red)
                _open(page, f"{server.url}/assets/video_quality_scores?view=partitions", "Partitions")
                page.get_by_text("Failed (1)").wait_for(timeout=30_000)
                assert page.get_by_text("Materialized (1)").count() == 1
                page.screenshot(path=str(shots / "partitions.png"))

                # the events of video_quality_scores, the demo partition's materialisation selected
                _open(page, f"{server.url}/assets/video_quality_scores?view=events&partition={demo_key}",
                      "dagster/row_count")
                page.get_by_text(f"Partition {demo_key} materialized", exact=False).first.wait_for()
                body = page.inner_text("body")
                for name in ("dagster/row_count", "failed_share", "top_errors", "preview", "score_histogram",
                             "score_histogram_large", "throughput_videos_per_s"):
                    assert name in body, name
                row = page.locator("tr", has=page.get_by_text("failed_share", exact=True)).first
                assert "0.25" in row.inner_text()
                rows = page.locator("tr", has=page.get_by_text("dagster/row_count", exact=True)).first
                assert rows.inner_text().split()[-1] == "4"
                # the preview table: every demo video, the broken one with its reason
                preview = page.locator("tr", has=page.get_by_text("preview", exact=True)).first
                text = preview.inner_text()
                for vid in ("sharp", "blurry", "dark", "broken"):
                    assert vid in text
                assert "not a readable video container" in text
                hist = page.locator("tr", has=page.get_by_text("score_histogram", exact=True)).first
                img = hist.locator('img[src^="data:image/png"]').first
                img.wait_for()
                assert _image_loaded(img)
                end = page.get_by_text("Show tags", exact=False).first.bounding_box()  # below the metadata
                page.screenshot(path=str(shots / "quality_events.png"),
                                clip={"x": 0, "y": 0, "width": 1700, "height": end["y"] + end["height"] + 20})

                # video_keyframes: the contact sheet is behind "[Show Markdown]" (longer than the UI inlines)
                _open(page, f"{server.url}/assets/video_keyframes?view=events&partition={demo_key}",
                      "contact_sheet")
                sheet_row = page.locator("tr", has=page.get_by_text("contact_sheet", exact=True)).first
                sheet_row.get_by_text("[Show Markdown]").click()
                dialog = page.get_by_role("dialog").last
                sheet = dialog.locator('img[src^="data:image/png"]').first
                sheet.wait_for()
                assert _image_loaded(sheet)
                assert sheet.evaluate("img => img.naturalWidth") > 300  # a row of thumbnails, not an icon
                dialog.screenshot(path=str(shots / "contact_sheet.png"))
            except Exception:
                page.screenshot(path=str(shots / "failure.png"), full_page=True)  # what the page showed
                (shots / "failure.html").write_text(page.content())
                print(f"\nthe page at the failure: {shots / 'failure.png'}")
                raise
            finally:
                browser.close()
    for name in ("partitions.png", "quality_events.png", "contact_sheet.png"):
        assert (shots / name).stat().st_size > 10_000, name
    print(f"\nscreenshots: {shots}")
    if os.environ.get("VIDEO_ASSETS_UPDATE_SCREENSHOT") == "1":
        _compose(shots / "quality_events.png", shots / "contact_sheet.png",
                 "video_keyframes -> Events -> contact_sheet [Show Markdown] (dialog):",
                 REPO / "docs" / "ui_quality_scores.png")
