"""GPU busy sampling (compute/gpu_busy.py). This machine has no GPU: a stand-in ``nvidia-smi`` on PATH prints
what the real one prints for the query, so the sampling, the parsing and the metadata run for real;
bench/gpu_session.sh checks the real nvidia-smi on the H200 (and test_nvdec's GPU tests run there)."""

from __future__ import annotations

import time

from video_assets.compute.gpu_busy import QUERY, GpuBusy, smi_id


def test_nothing_is_sampled_for_a_cpu_device(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # not even a stand-in is started
    assert smi_id("cpu") is None
    busy = GpuBusy("cpu")
    with busy:
        pass
    assert busy.samples == [] and busy.means() == (None, None) and busy.metadata() == {}


def test_samples_are_pooled_over_blocks_and_become_metadata(fake_nvidia_smi):
    busy = GpuBusy("cuda:1", interval_ms=20, gpu="GPU-1234")
    for _ in range(2):
        with busy:
            time.sleep(0.3)
    assert f"--query-gpu={QUERY}" in fake_nvidia_smi.read_text() and "-i GPU-1234" in fake_nvidia_smi.read_text()
    assert "-lms 20" in fake_nvidia_smi.read_text()
    n = len(busy.samples)
    assert n >= 4 and set(busy.samples) <= {(80.0, 10.0), (90.0, 30.0)}  # the "[N/A]" line is skipped
    gpu, dec = busy.means()
    assert 80 <= gpu <= 90 and 10 <= dec <= 30
    assert busy.metadata() == {"gpu_busy_pct": gpu, "nvdec_busy_pct": dec, "gpu_busy_samples": n}


def test_without_nvidia_smi_a_cuda_device_gives_no_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    busy = GpuBusy("cuda:0", gpu="0")
    with busy:
        pass
    assert busy.metadata() == {}
