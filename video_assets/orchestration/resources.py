"""Dagster resources: where the warehouse and the inbox live, and how CLIP models run.

Both read their defaults from the environment when the code location loads (:meth:`from_env`), and every field
can be changed per run in the Launchpad ("resources" section) or in ``definitions.py``.
"""

import os
from typing import Any

import dagster as dg
from pydantic import Field

from video_assets.compute import BACKEND_ENV, ComputeBackend, make_backend
from video_assets.models.defaults import MODEL_ENV, MODEL_PATH_ENV
from video_assets.pipeline.registry import ManifestRegistry, UploadLedger
from video_assets.pipeline.settings import ModelSettings, pipeline_source_policy
from video_assets.pipeline.tables import keyframes_dir, table_uri
from video_assets.storage import join_uri
from video_assets.storage.policy import ALL_SCHEMES, SourcePolicy
from video_assets.storage.uri import scheme_of, strip_file_scheme
from video_assets.video.limits import ReadLimits

WAREHOUSE_ENV = "VIDEO_ASSETS_WAREHOUSE"
INBOX_ENV = "VIDEO_ASSETS_INBOX"
DEFAULT_WAREHOUSE = "data/warehouse"
DEFAULT_INBOX = "data/inbox"
_L = ReadLimits()

# Source policy and limits: environment variable -> WarehouseResource field (read by from_env). Lists are
# comma-separated; a limit set to "none" is switched off.
SOURCE_ENV = {
    "VIDEO_ASSETS_ALLOWED_SCHEMES": "allowed_schemes",
    "VIDEO_ASSETS_ALLOWED_ROOTS": "allowed_local_roots",
    "VIDEO_ASSETS_ALLOWED_BUCKETS": "allowed_buckets",
    "VIDEO_ASSETS_ALLOWED_HOSTS": "allowed_hosts",
    "VIDEO_ASSETS_ALLOW_PRIVATE_NETWORKS": "allow_private_networks",
    "VIDEO_ASSETS_MAX_VIDEO_BYTES": "max_video_bytes",
    "VIDEO_ASSETS_MAX_DURATION_SEC": "max_duration_sec",
    "VIDEO_ASSETS_MAX_PIXELS": "max_pixels",
    "VIDEO_ASSETS_MAX_DECODED_FRAMES": "max_decoded_frames",
    "VIDEO_ASSETS_VIDEO_TIMEOUT_SEC": "video_timeout_sec",
    "VIDEO_ASSETS_HTTP_CONNECT_TIMEOUT_SEC": "http_connect_timeout_sec",
    "VIDEO_ASSETS_HTTP_READ_TIMEOUT_SEC": "http_read_timeout_sec",
    "VIDEO_ASSETS_MAX_RETRIES": "max_retries",
}
_LIST_FIELDS = {"allowed_schemes", "allowed_local_roots", "allowed_buckets", "allowed_hosts"}


def source_settings_from_env(environ=None) -> dict:
    """WarehouseResource field values set by the VIDEO_ASSETS_* source-policy and limit variables."""
    environ = os.environ if environ is None else environ
    out: dict = {}
    for var, field in SOURCE_ENV.items():
        raw = environ.get(var)
        if raw is None or not raw.strip():
            continue
        raw = raw.strip()
        if field in _LIST_FIELDS:
            out[field] = [v.strip() for v in raw.split(",") if v.strip()]
        elif field == "allow_private_networks":
            out[field] = raw.lower() in ("1", "true", "yes", "on")
        elif raw.lower() == "none":
            out[field] = None
        elif field in ("max_video_bytes", "max_pixels", "max_decoded_frames", "max_retries"):
            out[field] = int(raw)
        else:
            out[field] = float(raw)
    return out


def _absolute(uri: str) -> str:
    """Local paths become absolute (relative ones resolve against the working directory); URIs stay."""
    uri = os.fspath(uri).strip()
    if scheme_of(uri) in ("", "file"):
        path = strip_file_scheme(uri)
        return os.path.abspath(os.path.expanduser(path))
    return uri.rstrip("/")


class WarehouseResource(dg.ConfigurableResource):
    """Where tables, keyframe images and the manifest registry are written, and the inbox the sensors watch.
    Local folders or object-store prefixes (``s3://bucket/prefix``, ``tos://...``); S3 endpoint and
    credentials come from the usual AWS environment (``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ...)."""

    warehouse: str = Field(default=DEFAULT_WAREHOUSE, description=(
        f"Base URI of the tables: {{warehouse}}/{{asset}}/{{partition}}.parquet (env {WAREHOUSE_ENV})."))
    inbox: str = Field(default=DEFAULT_INBOX, description=(
        f"Inbox watched by the sensors: {{inbox}}/manifests/ and {{inbox}}/videos/ (env {INBOX_ENV})."))
    upload_batch_size: int = Field(default=100,
                                   description="video_upload_sensor: videos per generated manifest.")
    max_manifests_per_tick: int = Field(default=10, description=(
        "video_upload_sensor: manifests written per evaluation at most (the rest wait for the next one)."))
    max_runs_per_tick: int = Field(default=50, description=(
        "manifest_sensor: manifests registered (runs requested) per evaluation at most."))
    lookback_seconds: float = Field(default=600.0, description=(
        "Sensors: objects that appear late in a listing with a modification time up to this much older than "
        "the newest one seen are still picked up."))
    settle_seconds: float = Field(default=5.0, description=(
        "Sensors: files modified less than this long ago wait for the next evaluation (copies in progress)."))

    # -- where manifest rows may point (docs/security.md) ---------------------------------------------------
    allowed_schemes: list[str] = Field(default=list(ALL_SCHEMES), description=(
        "Source schemes manifest rows may use: file (local paths), http, https, s3, tos "
        "(env VIDEO_ASSETS_ALLOWED_SCHEMES)."))
    allowed_local_roots: list[str] = Field(default=[], description=(
        "Folders local videos may be in besides the inbox tree and data/ (env VIDEO_ASSETS_ALLOWED_ROOTS)."))
    allowed_buckets: list[str] = Field(default=[], description=(
        "s3/tos buckets videos may be in besides the inbox's and warehouse's (env VIDEO_ASSETS_ALLOWED_BUCKETS)."))
    allowed_hosts: list[str] | None = Field(default=None, description=(
        "http(s) hosts videos may come from ('*.example.com' for subdomains); empty: any public host "
        "(env VIDEO_ASSETS_ALLOWED_HOSTS)."))
    allow_private_networks: bool = Field(default=False, description=(
        "Allow http(s) sources on loopback, private and link-local addresses (cloud metadata addresses stay "
        "blocked) (env VIDEO_ASSETS_ALLOW_PRIVATE_NETWORKS)."))
    # -- what one video may cost -------------------------------------------------------------------------
    max_video_bytes: int | None = Field(default=_L.max_bytes, description=(
        "Bytes read per video (env VIDEO_ASSETS_MAX_VIDEO_BYTES); empty: no limit."))
    max_duration_sec: float | None = Field(default=_L.max_duration_sec, description=(
        "Longest video accepted, seconds (env VIDEO_ASSETS_MAX_DURATION_SEC)."))
    max_pixels: int | None = Field(default=_L.max_pixels, description=(
        "Largest frame accepted, width x height, checked before decoding (env VIDEO_ASSETS_MAX_PIXELS)."))
    max_decoded_frames: int | None = Field(default=_L.max_decoded_frames, description=(
        "Frames decoded per video at most (env VIDEO_ASSETS_MAX_DECODED_FRAMES)."))
    video_timeout_sec: float | None = Field(default=_L.timeout_sec, description=(
        "Wall-clock time per video; a video past it is abandoned (env VIDEO_ASSETS_VIDEO_TIMEOUT_SEC)."))
    http_connect_timeout_sec: float | None = Field(default=_L.http_connect_timeout_sec, description=(
        "HTTP/S3 connect timeout (env VIDEO_ASSETS_HTTP_CONNECT_TIMEOUT_SEC)."))
    http_read_timeout_sec: float | None = Field(default=_L.http_read_timeout_sec, description=(
        "HTTP/S3 socket read timeout (env VIDEO_ASSETS_HTTP_READ_TIMEOUT_SEC)."))
    max_retries: int = Field(default=_L.max_retries, description=(
        "Retries of transient errors (HTTP 5xx, resets, S3 throttling) per request (env VIDEO_ASSETS_MAX_RETRIES)."))

    @classmethod
    def from_env(cls, **overrides) -> "WarehouseResource":
        kwargs = {"warehouse": os.environ.get(WAREHOUSE_ENV) or DEFAULT_WAREHOUSE,
                  "inbox": os.environ.get(INBOX_ENV) or DEFAULT_INBOX, **source_settings_from_env()}
        kwargs.update(overrides)
        return cls(**kwargs)

    def source_policy(self) -> SourcePolicy:
        """The strict pipeline policy: local roots = inbox tree + data/ + allowed_local_roots; buckets = the
        inbox's and warehouse's + allowed_buckets; hosts = allowed_hosts or any public host."""
        # The env lists add to the configured ones even on a resource built without from_env (deployment-wide
        # extras, e.g. a mounted media folder).
        env = source_settings_from_env()
        return pipeline_source_policy(self.inbox_uri, self.warehouse_uri,
                                      extra_roots=(*self.allowed_local_roots, *env.get("allowed_local_roots", ())),
                                      extra_buckets=(*self.allowed_buckets, *env.get("allowed_buckets", ())),
                                      hosts=tuple(self.allowed_hosts) if self.allowed_hosts else None,
                                      schemes=tuple(self.allowed_schemes),
                                      allow_private_networks=self.allow_private_networks)

    def read_limits(self) -> ReadLimits:
        return ReadLimits(max_bytes=self.max_video_bytes, max_duration_sec=self.max_duration_sec,
                          max_pixels=self.max_pixels, max_decoded_frames=self.max_decoded_frames,
                          timeout_sec=self.video_timeout_sec,
                          http_connect_timeout_sec=self.http_connect_timeout_sec,
                          http_read_timeout_sec=self.http_read_timeout_sec, max_retries=self.max_retries)

    @property
    def warehouse_uri(self) -> str:
        return _absolute(self.warehouse)

    @property
    def inbox_uri(self) -> str:
        return _absolute(self.inbox)

    @property
    def manifests_uri(self) -> str:
        return join_uri(self.inbox_uri, "manifests")

    @property
    def videos_uri(self) -> str:
        return join_uri(self.inbox_uri, "videos")

    def table_uri(self, asset: str, partition_key: str) -> str:
        return table_uri(self.warehouse_uri, asset, partition_key)

    def keyframes_dir(self, partition_key: str) -> str:
        return keyframes_dir(self.warehouse_uri, partition_key)

    def registry(self) -> ManifestRegistry:
        return ManifestRegistry(self.warehouse_uri)

    def upload_ledger(self) -> UploadLedger:
        return UploadLedger(self.warehouse_uri)


class ClipModelResource(dg.ConfigurableResource):
    """How the CLIP models run. Models are loaded once per process by the core's cache (keyed by name, folder,
    device and dtype) and shared by every step and operator in that process."""

    device: str | None = Field(default=None, description=(
        "'cuda', 'cuda:N' or 'cpu'; empty: cuda when a GPU exists, else cpu."))
    dtype: str | None = Field(default=None, description=(
        "'float16', 'bfloat16', 'float32'; empty: float16 on GPU, float32 on CPU."))
    model_path: str | None = Field(default=None, description=(
        f"Folder of local models ({{model_path}}/{{model name}}); empty: env {MODEL_PATH_ENV}, else the hub "
        "cache."))
    quality_model_name: str | None = Field(default=None, description=(
        f"CLIP for quality scores; empty: env {MODEL_ENV}, else openai/clip-vit-large-patch14."))
    keyframes_model_name: str | None = Field(default=None, description=(
        f"CLIP for keyframes; empty: env {MODEL_ENV}, else openai/clip-vit-base-patch32."))
    quality_batch_size: int = Field(default=32, description="Frames per forward pass (quality).")
    keyframes_batch_size: int = Field(default=16, description="Frames per forward pass (keyframes).")
    decode_workers: int | None = Field(default=None, description=(
        "Parallel decode threads feeding the model; empty: min(4, CPUs)."))
    decode_processes: int | None = Field(default=None, description=(
        "Decode in this many worker processes (each with its own GIL) instead of threads; 0: threads; empty: "
        "auto (threads below 8 cores, else processes)."))

    def settings(self) -> ModelSettings:
        return ModelSettings(device=self.device or None, dtype=self.dtype or None,
                             model_path=self.model_path or None,
                             quality_model_name=self.quality_model_name or None,
                             keyframes_model_name=self.keyframes_model_name or None,
                             quality_batch_size=self.quality_batch_size,
                             keyframes_batch_size=self.keyframes_batch_size,
                             decode_workers=self.decode_workers, decode_processes=self.decode_processes)

    def load(self, which: str = "quality"):
        """Load (or get from the process-wide cache) the quality or keyframes model; raises ModelLoadError
        with the loader's message when the weights cannot be found."""
        from video_assets.models import load_clip
        from video_assets.operators.common import resolve_device

        s = self.settings()
        name = s.quality_model if which == "quality" else s.keyframes_model
        device = resolve_device(s.device)
        dtype = s.dtype or ("float16" if device.startswith("cuda") else "float32")
        return load_clip(name, s.resolved_model_path or None, device, dtype,
                         s.quality_batch_size if which == "quality" else s.keyframes_batch_size)


class ComputeResource(dg.ConfigurableResource):
    """Where the GPU steps run: ``local`` (this process; the default) or ``ray`` (a Ray cluster: each worker
    holds one operator with its model loaded once, and processes batches of manifest rows)."""

    backend: str = Field(default="local", description=(
        f"'local' or 'ray' (env {BACKEND_ENV} sets the default when the code location loads)."))
    address: str = Field(default="", description=(
        "Ray: 'auto' (a running cluster), 'ray://host:10001', or empty to start a local Ray instance."))
    num_workers: int = Field(default=1, description="Ray: concurrent workers (operator instances).")
    num_gpus_per_worker: float = Field(default=0.0, description="Ray: GPUs per worker (0 on a CPU cluster).")
    batch_size: int = Field(default=8, description="Ray: manifest rows per task handed to a worker.")
    num_cpus_per_worker: float | None = Field(default=None, description=(
        "Ray: CPUs each worker reserves (decode threads, and the model's threads on a CPU); empty: the "
        "cluster's CPUs divided among the workers."))
    runtime_env: dict[str, Any] | None = Field(default=None, description=(
        "Ray: the runtime environment of the job when this step makes the connection, e.g. "
        "{'env_vars': {'VIDEO_ASSETS_MODEL_PATH': '/models'}} or {'py_modules': [...]}."))

    @classmethod
    def from_env(cls, **overrides) -> "ComputeResource":
        kwargs = {"backend": os.environ.get(BACKEND_ENV) or "local"}
        kwargs.update(overrides)
        return cls(**kwargs)

    def make(self) -> ComputeBackend:
        return make_backend(self.backend, address=self.address, num_workers=self.num_workers,
                            num_gpus_per_worker=self.num_gpus_per_worker, batch_size=self.batch_size,
                            num_cpus_per_worker=self.num_cpus_per_worker, runtime_env=self.runtime_env)


def default_resources(**overrides) -> dict:
    """The resources every asset needs, with defaults from the environment; ``overrides`` replace any of them
    by key (``clip``, ``warehouse``, ``compute``)."""
    resources = {"clip": ClipModelResource(), "warehouse": WarehouseResource.from_env(),
                 "compute": ComputeResource.from_env()}
    resources.update(overrides)
    return resources
