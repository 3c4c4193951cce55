"""How busy a GPU was while a block of work ran: ``nvidia-smi``'s ``utilization.gpu`` (the share of time a kernel
ran) and ``utilization.decoder`` (NVDEC), sampled in the background.

``nvidia-smi`` ships with the NVIDIA driver, so this needs no Python package; where it is missing, or the device
is not a CUDA one, nothing is sampled and :meth:`GpuBusy.metadata` is empty. The figures are the whole GPU's:
other processes on the same GPU count too.
"""

from __future__ import annotations

import shutil
import subprocess

QUERY = "utilization.gpu,utilization.decoder"


def smi_id(device: str) -> str | None:
    """``nvidia-smi -i``'s name of the CUDA device ``device`` ("cuda:1"): its UUID (the same GPU whatever
    ``CUDA_VISIBLE_DEVICES`` renumbers), else its index; None for a device that is not CUDA."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    index = torch.device(device).index or 0
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
    except Exception:  # noqa: BLE001 - an old driver or build without the UUID: the index
        return str(index)
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"


class GpuBusy:
    """``with GpuBusy(device): ...`` samples the device every ``interval_ms`` while the block runs; use one
    object for several blocks to pool their samples. :meth:`means` is (GPU %, NVDEC %) or (None, None)."""

    def __init__(self, device: str = "cuda:0", interval_ms: int = 200, gpu: str | None = None):
        self.gpu = gpu if gpu is not None else smi_id(device)
        self.interval_ms = interval_ms
        self.samples: list[tuple[float, float]] = []
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> GpuBusy:
        smi = shutil.which("nvidia-smi")
        if self.gpu is not None and smi:
            self._proc = subprocess.Popen(
                [smi, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits", "-lms", str(self.interval_ms),
                 "-i", self.gpu], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        for line in out.splitlines():
            try:
                gpu, dec = (float(x) for x in line.split(","))
            except ValueError:  # "[N/A]" where the GPU does not report one; a partial last line
                continue
            self.samples.append((gpu, dec))

    def means(self) -> tuple[float | None, float | None]:
        if not self.samples:
            return None, None
        n = len(self.samples)
        return round(sum(g for g, _ in self.samples) / n, 1), round(sum(d for _, d in self.samples) / n, 1)

    def metadata(self) -> dict[str, float | int]:
        """``gpu_busy_pct``, ``nvdec_busy_pct`` and ``gpu_busy_samples`` for a run's metadata; empty without
        samples."""
        gpu, dec = self.means()
        if gpu is None:
            return {}
        return {"gpu_busy_pct": gpu, "nvdec_busy_pct": dec, "gpu_busy_samples": len(self.samples)}
