"""The Ray backend: the operator runs in Ray actors (one operator per worker, its model loaded once per worker
process), fed batches of manifest rows through :class:`ray.util.ActorPool`; the driver gathers the typed
results in input order. Install with ``pip install 'video_assets[ray]'``; only imported when chosen.

Faults (Ray's own retry machinery, bounded):

- a worker process that dies is restarted by Ray (``max_restarts``) and its batch retried once on it
  (``max_task_retries=1``);
- a batch that kills its worker twice is split into single videos, each again with one retry; a video that
  kills a worker twice on its own becomes a failed row (``worker crashed while decoding <uri>``), the
  operator's own failed result (``failed_result``) made on a healthy worker. The run completes;
- when every video of a split batch (3 or more) crashes on its own, the fault is not the videos' (a broken
  worker image, a model that cannot load): the step fails with
  :class:`~video_assets.compute.base.ComputeBackendError`.

Lifetime: when no Ray instance is connected, the first call connects to ``address`` (or starts a local one,
bound to 127.0.0.1, no dashboard, usage stats off) and leaves it connected for the rest of the process; the
workers are kept too (per worker shape), so the next step or partition in this process finds its models warm.
:func:`shutdown` kills the workers and disconnects (a local instance started here stops); Ray's exit hook does
the same at interpreter exit.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from video_assets.compute import ray_connection
from video_assets.compute.base import ComputeBackend, ComputeBackendError, OperatorFactory
from video_assets.compute.ray_connection import connect, first_line, import_ray, shutdown
from video_assets.compute.ray_worker import Worker
from video_assets.compute.settings import ComputeSettings
from video_assets.storage import describe_uri

if TYPE_CHECKING:
    from video_assets.progress import Progress

__all__ = ["RayBackend", "connect", "shutdown"]

log = logging.getLogger(__name__)


def _crash_errors() -> tuple:
    """The worker process (or its node) went away while running a task; Ray's retries are spent by then."""
    from ray import exceptions as x

    return (x.RayActorError, x.WorkerCrashedError, x.OutOfMemoryError, x.NodeDiedError,
            x.LocalRayletDiedError)


@dataclass
class _Job:
    kind: str  # "run": operator over positions; "failed": the failed row of positions[0]
    positions: list[int]
    parent: _Split | None = None
    message: str = ""


@dataclass
class _Split:
    """A batch that killed its worker twice, now run video by video."""

    videos: list[str]
    pending: int
    crashed: list[str] = field(default_factory=list)



class RayBackend(ComputeBackend):
    """Map an operator factory over videos on a Ray cluster.

    ``address``: "" (start a local instance, or use the one this process is connected to), "auto", or
    "ray://head:10001"; ``num_workers``: concurrent workers (operator instances); ``num_gpus_per_worker``:
    GPUs each worker reserves (fractions share a GPU); ``batch_size``: manifest rows per task;
    ``num_cpus_per_worker``: CPUs each worker reserves (its decode threads and, on a CPU, the model's threads:
    Ray sets a worker's OMP_NUM_THREADS to it); empty: the instance's CPUs divided among the workers, so one
    worker gets the whole machine like the local backend; ``runtime_env``: Ray's runtime
    environment for the job (e.g. ``{"env_vars": {...}}``), used when this backend makes the connection.
    """

    name = "ray"

    def __init__(self, settings: ComputeSettings | None = None, **options):
        """``settings`` (backend "ray"), or its Ray options as keywords (see
        :class:`~video_assets.compute.settings.ComputeSettings`, which validates them)."""
        if settings is None:
            settings = ComputeSettings(backend="ray", **options)
        elif options:
            settings = dataclasses.replace(settings, **options)
        self.settings = settings
        self.address = settings.address
        self.num_workers, self.batch_size = settings.num_workers, settings.batch_size
        self.num_gpus_per_worker = float(settings.num_gpus_per_worker)
        self.num_cpus_per_worker = (None if settings.num_cpus_per_worker is None
                                    else float(settings.num_cpus_per_worker))
        self.runtime_env = settings.runtime_env
        self.max_task_retries = settings.max_task_retries

    # -- workers --------------------------------------------------------------------------------------------
    def _cpus_per_worker(self) -> float:
        """The CPUs each worker reserves: as configured, else an equal share of the instance's CPUs (with one
        CPU per worker a lone worker would decode and run the model on one thread: half the local speed on a
        2-core machine)."""
        if self.num_cpus_per_worker is None:  # resolved once, when connected
            total = import_ray().cluster_resources().get("CPU", 1)
            self.num_cpus_per_worker = float(max(1, int(total // self.num_workers)))
        return self.num_cpus_per_worker

    def _shape(self) -> tuple:
        return (self.num_workers, self.num_cpus_per_worker, self.num_gpus_per_worker, self.max_task_retries)

    def _check_resources(self) -> None:
        total = import_ray().cluster_resources()
        if ray_connection.started_local() and self.num_gpus_per_worker > total.get("GPU", 0):
            raise ComputeBackendError(
                f"num_gpus_per_worker={self.num_gpus_per_worker:g} but the local Ray instance has "
                f"{total.get('GPU', 0):g} GPUs; set it to 0 on a CPU machine")

    def _actors(self) -> list:
        with ray_connection.lock:
            # A local instance gets enough logical CPUs for the workers asked for (they would wait forever
            # otherwise); a cluster has what it has (an autoscaler may add nodes).
            connect(self.address, self.runtime_env,
                    max(os.cpu_count() or 1, math.ceil(self.num_workers * (self.num_cpus_per_worker or 1))))
            cpus = self._cpus_per_worker()
            ray = import_ray()
            job = ray.get_runtime_context().get_job_id()
            cached = ray_connection.workers.get(self._shape())
            if cached and cached[0] == job:
                return cached[1]
            for _, old in ray_connection.workers.values():
                for a in old:
                    ray.kill(a, no_restart=True)
            ray_connection.workers.clear()
            self._check_resources()
            # max_restarts=-1: a crash restarts the worker; what bounds the work lost is the per-task retry
            # count and the split-on-second-crash rule of map_results.
            cls = ray.remote(Worker).options(num_cpus=cpus, num_gpus=self.num_gpus_per_worker,
                                             max_restarts=-1, max_task_retries=self.max_task_retries)
            actors = [cls.remote() for _ in range(self.num_workers)]
            ray_connection.workers[self._shape()] = (job, actors)
            return actors

    def _discard_workers(self) -> None:
        with ray_connection.lock:
            _, actors = ray_connection.workers.pop(self._shape(), (None, []))
        for a in actors:
            try:
                import_ray().kill(a, no_restart=True)
            except Exception:  # noqa: BLE001
                pass

    # -- the map --------------------------------------------------------------------------------------------
    def map_results(self, factory: OperatorFactory, videos: Sequence[str], progress: Progress,
                    texts: Sequence[Any] | None = None) -> list:
        videos = list(videos)
        if not videos:
            return []
        try:
            return self._map(factory, videos, progress, None if texts is None else list(texts))
        except BaseException:
            # Tasks of this call may still be queued on the workers: start the next call with fresh ones.
            self._discard_workers()
            raise

    def _map(self, factory: OperatorFactory, videos: list[str], progress: Progress,
             texts: list[Any] | None) -> list:
        actors = self._actors()  # connects first: Ray's first import must see the loopback setting
        from ray.util import ActorPool

        n = len(videos)
        ray, crashes = import_ray(), _crash_errors()
        pool = ActorPool(actors)
        key = uuid.uuid4().hex  # one operator per worker for this call
        factory_ref = ray.put(factory)  # shipped once, not with every batch
        out: list[Any] = [None] * n
        have = [False] * n
        jobs: dict[int, _Job] = {}
        ref_of: dict[int, Any] = {}  # job -> its ObjectRef, while the pool has not returned it
        ids = itertools.count()

        def submit(job: _Job) -> None:
            jid = next(ids)
            jobs[jid] = job

            def call(actor, jid=jid):  # called by the pool when a worker is free
                if job.kind == "run":
                    ref = actor.run.remote(key, factory_ref, jid, [videos[p] for p in job.positions],
                                           None if texts is None else [texts[p] for p in job.positions])
                else:
                    ref = actor.failed.remote(key, factory_ref, jid, videos[job.positions[0]], job.message)
                ref_of[jid] = ref
                return ref

            pool.submit(call, jid)

        # Small manifests are spread over every worker rather than left to the first one.
        size = max(1, min(self.batch_size, math.ceil(n / self.num_workers)))
        for start in range(0, n, size):
            submit(_Job("run", list(range(start, min(n, start + size)))))
        while pool.has_next():
            try:
                # wake up now and then to say what it waits for (never a busy loop: at least 1 s)
                jid, results = pool.get_next_unordered(timeout=min(max(progress.every, 1.0), 60.0))
            except TimeoutError:
                free = ray.available_resources()
                log.info("%s: %d/%d videos, waiting for Ray workers (free on the cluster: %g CPUs, %g GPUs)",
                         progress.label, progress.done, n, free.get("CPU", 0), free.get("GPU", 0))
                continue
            except crashes as e:
                jid = self._crashed_job(ref_of)
                ref_of.pop(jid)
                self._on_crash(jobs.pop(jid), e, videos, submit)
                continue
            ref_of.pop(jid, None)
            job = jobs.pop(jid)
            for p, d in zip(job.positions, results):
                out[p], have[p] = d, True
            if job.parent is not None and job.kind == "run":
                job.parent.pending -= 1
            progress.step(len(job.positions))
        missing = [videos[i] for i in range(n) if not have[i]]
        if missing:  # cannot happen unless a result went astray; never return rows for the wrong videos
            raise ComputeBackendError(f"Ray backend lost the results of {len(missing)} videos, e.g. "
                                      f"{describe_uri(missing[0])}")
        return out

    @staticmethod
    def _crashed_job(ref_of: dict[int, Any]) -> int:
        """The job whose worker died: the pool raised for one finished task without saying which; any finished
        task whose result is that kind of error will do (each such task is raised once)."""
        ray = import_ray()
        refs = {ref: jid for jid, ref in ref_of.items()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        for ref in ready:
            try:
                ray.get(ref)
            except _crash_errors():
                return refs[ref]
            except Exception:  # noqa: BLE001 - another kind of failure: the pool will raise it in its turn
                continue
        raise ComputeBackendError("Ray backend: a worker died but no finished task reports it")

    def _on_crash(self, job: _Job, e: BaseException, videos: list[str], submit) -> None:
        reason = first_line(e)
        if job.kind == "failed":
            raise ComputeBackendError(f"Ray workers keep dying, even when decoding nothing: {reason}") from e
        if len(job.positions) > 1:
            log.warning("a Ray worker died twice on a batch of %d videos (%s); retrying them one by one",
                        len(job.positions), reason)
            split = _Split([videos[p] for p in job.positions], pending=len(job.positions))
            for p in job.positions:
                submit(_Job("run", [p], parent=split))
            return
        p = job.positions[0]
        attempts = 1 + self.max_task_retries
        message = (f"worker crashed while decoding {describe_uri(videos[p])} (its Ray worker process died "
                   f"{attempts} time{'s' if attempts > 1 else ''} on it alone: {type(e).__name__})")
        log.warning("%s; %s", message, reason)
        split = job.parent
        if split is not None:
            split.pending -= 1
            split.crashed.append(videos[p])
            if split.pending == 0 and len(split.crashed) == len(split.videos) >= 3:
                raise ComputeBackendError(
                    f"Ray workers died on every one of {len(split.videos)} videos run alone (e.g. "
                    f"{describe_uri(split.videos[0])}): the fault is in the workers, not the videos: "
                    f"{reason}") from e
        submit(_Job("failed", [p], parent=None, message=message))
