"""Where and how the work runs: :class:`DecodeSettings` (one operator's decode threads) and
:class:`ComputeSettings` (the backend and its Ray options). The one definition of these parameters: the
operators, :class:`~video_assets.compute.ray_backend.RayBackend` and the Dagster resources use them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from video_assets.fields import setting

BACKEND_ENV = "VIDEO_ASSETS_COMPUTE_BACKEND"
BACKENDS = ("local", "ray")


def default_decode_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def decoder_threads_for(decode_workers: int) -> int:
    """FFmpeg threads per video when ``decode_workers`` videos decode at once: the cores shared out.

    Parallelism across videos is cheaper than frame threading inside one (seeks flush the thread pipeline),
    so with 2 cores and 2 workers each decoder gets one thread.
    """
    return max(1, (os.cpu_count() or 1) // max(1, decode_workers))


# Auto: processes only where threads stop scaling. Measured on 2 cores (bench/decode_processes.py,
# BENCHMARKS.md): threads are as fast or faster there; the 16-core GPU host saw threads stall at ~5 busy cores.
AUTO_MIN_CORES = 8


def auto_decode_processes(device: str, cores: int | None = None) -> int:
    """The auto choice: 0 (threads) below :data:`AUTO_MIN_CORES` cores; else one process per core, less the
    cores the model needs (one with a GPU, half of them on the CPU)."""
    cores = cores or os.cpu_count() or 1
    if cores < AUTO_MIN_CORES:
        return 0
    return max(1, cores - 1) if not str(device).startswith("cpu") else max(1, cores // 2)


@dataclass(frozen=True)
class DecodeSettings:
    """How one operator decodes videos."""

    decode_workers: int | None = setting(None, "Parallel decode threads feeding the model; empty: min(4, CPUs).")
    decode_processes: int | None = setting(None, (
        "Decode in this many worker processes (each with its own GIL) instead of threads; 0: threads; empty: "
        "auto (threads below 8 cores, else processes)."))

    def __post_init__(self):
        v = self.decode_workers
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"decode_workers must be a positive int or None, got {v!r}")
        v = self.decode_processes
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"decode_processes must be None (auto), 0 (threads) or a positive int, got {v!r}")

    @property
    def workers(self) -> int:
        """``decode_workers``, else min(4, CPUs) (0 counts as the default, as it always has)."""
        return self.decode_workers or default_decode_workers()

    def processes_for(self, device: str, cores: int | None = None) -> int:
        """The decode processes a call on ``device`` uses: the setting, or the auto choice (0: threads)."""
        n = self.decode_processes
        return auto_decode_processes(device, cores) if n is None else n

    def describe(self, device: str) -> str:
        """How a call on ``device`` decodes on this machine, for run metadata: "4 decode threads" or "15 decode
        processes"."""
        n = self.processes_for(device)
        if n:
            return f"{n} decode process" + ("es" if n > 1 else "")
        return f"{self.workers} decode thread" + ("s" if self.workers > 1 else "")


def _int_at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"ray backend: {name} must be an int >= {low}, got {value!r}")


def _number_at_least_0(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"ray backend: {name} must be a number >= 0, got {value!r}")


@dataclass(frozen=True)
class ComputeSettings:
    """Where the model steps run: ``backend`` and, for ``ray``, the cluster and the workers."""

    backend: str = setting("local", f"'local' or 'ray' (env {BACKEND_ENV} sets the default when the code "
                                    "location loads).")
    address: str = setting("", "Ray: 'auto' (a running cluster), 'ray://host:10001', or empty to start a local "
                               "Ray instance.")
    num_workers: int = setting(1, "Ray: concurrent workers (operator instances).")
    num_gpus_per_worker: float = setting(0.0, "Ray: GPUs per worker (0 on a CPU cluster).")
    batch_size: int = setting(8, "Ray: manifest rows per task handed to a worker.")
    num_cpus_per_worker: float | None = setting(None, (
        "Ray: CPUs each worker reserves (decode threads, and the model's threads on a CPU); empty: the "
        "cluster's CPUs divided among the workers."))
    runtime_env: dict[str, Any] | None = setting(None, (
        "Ray: the runtime environment of the job when this step makes the connection, e.g. "
        "{'env_vars': {'VIDEO_ASSETS_MODEL_PATH': '/models'}} or {'py_modules': [...]}."))
    max_task_retries: int = setting(1, "Ray: retries of a batch whose worker died (then it is split).")

    def __post_init__(self):
        backend = (self.backend or "local").strip().lower()
        if backend not in BACKENDS:
            raise ValueError(f"compute backend must be one of {', '.join(BACKENDS)}; got {self.backend!r}")
        object.__setattr__(self, "backend", backend)
        object.__setattr__(self, "address", (self.address or "").strip())
        _int_at_least("num_workers", self.num_workers, 1)
        _int_at_least("batch_size", self.batch_size, 1)
        _int_at_least("max_task_retries", self.max_task_retries, 0)
        _number_at_least_0("num_gpus_per_worker", self.num_gpus_per_worker)
        _number_at_least_0("num_cpus_per_worker", 1 if self.num_cpus_per_worker is None
                           else self.num_cpus_per_worker)
