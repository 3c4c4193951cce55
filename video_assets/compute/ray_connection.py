"""The Ray connection of this process and the workers it keeps: :func:`connect` (to ``address``, or a local
instance bound to 127.0.0.1, no dashboard, usage stats off), :func:`shutdown`, and the cache of worker actors
the backend reuses across calls (one worker shape at a time).
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from video_assets.compute.base import ComputeBackendError
from video_assets.storage import describe_uri

log = logging.getLogger(__name__)

_LOCAL_ADDRESSES = ("", "local")
# Ray reads this once, when it is imported: "0" makes a single-node instance use the loopback address for
# every process (otherwise Ray swaps 127.0.0.1 for the machine's network address).
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# A local instance shares the machine with this process: Ray's default worker niceness (15, to keep its
# daemons responsive on busy cluster nodes) makes a worker's threads lose every wake-up to any other process,
# which cost 10-15 % of a one-worker run on 2 cores (bench/ray_backend.py); at 0 the worker runs like local
# code.
_LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0}


def import_ray():
    import ray  # the optional extra, imported on first use only

    return ray


lock = threading.Lock()  # guards the connection and the worker cache
_started_local = False  # this process started the Ray instance it is connected to
# worker shape -> (Ray job id, actor handles): kept for the next call in this process. One shape at a time:
# workers of another shape would hold the CPUs/GPUs the new ones wait for.
workers: dict[tuple, tuple[str, list]] = {}


def first_line(e: BaseException) -> str:
    """The first line of an error message, at most 300 characters (Ray's errors carry whole tracebacks)."""
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def connect(address: str = "", runtime_env: dict | None = None, num_cpus: int | None = None,
            num_gpus: int | None = None) -> None:
    """Connect this process to Ray unless it is connected already: ``address`` "" (or "local") starts a local
    instance (``num_cpus``/``num_gpus``: its logical CPUs and GPUs, default: the machine's), "auto" finds a
    running cluster, "ray://..." connects through the Ray client. Raises ComputeBackendError when that
    fails."""
    global _started_local
    address = (address or "").strip()
    local = address.lower() in _LOCAL_ADDRESSES
    set_here = False
    if local and "ray" not in sys.modules and _LOOPBACK_ENV not in os.environ:
        # Before Ray's first import and while it starts its processes; dropped afterwards so that later
        # children of this process do not inherit it.
        os.environ[_LOOPBACK_ENV], set_here = "0", True
    try:
        ray = import_ray()
        if ray.is_initialized():
            return
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing phones home unless asked for
        try:
            if local:
                ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                         _node_ip_address="127.0.0.1", runtime_env=runtime_env, logging_level=logging.WARNING,
                         _system_config=_LOCAL_SYSTEM_CONFIG)
                _started_local = True
                res = ray.cluster_resources()
                log.info("started a local Ray instance (%g CPUs, %g GPUs)", res.get("CPU", 0),
                         res.get("GPU", 0))
            else:
                ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING)
                log.info("connected to the Ray cluster at %s", describe_uri(address))
        except (ConnectionError, TimeoutError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
            where = ("start a local Ray instance" if local
                     else f"connect to the Ray cluster at {describe_uri(address)!r}")
            raise ComputeBackendError(
                f"cannot {where}: {type(e).__name__}: {first_line(e)} (compute address: 'auto' for a "
                "running cluster, 'ray://head:10001', or empty for a local instance)") from e
    finally:
        if set_here:
            os.environ.pop(_LOOPBACK_ENV, None)


def shutdown() -> None:
    """Kill the cached workers and disconnect from Ray (a local instance started here stops)."""
    global _started_local
    if "ray" not in sys.modules:
        return
    ray = import_ray()
    with lock:
        for _, actors in workers.values():
            for a in actors:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone with its cluster
                    pass
        workers.clear()
        if ray.is_initialized():
            ray.shutdown()
        _started_local = False



def started_local() -> bool:
    """Whether this process started the Ray instance it is connected to."""
    return _started_local
