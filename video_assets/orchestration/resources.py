"""Dagster resources: where the warehouse and the inbox live, and how CLIP models run.

Both read their defaults from the environment when the code location loads (:meth:`from_env`), and every field
can be changed per run in the Launchpad ("resources" section) or in ``definitions.py``.
"""

import os
import typing

import dagster as dg
from pydantic import Field

from video_assets import fields as settings_fields
from video_assets.compute import BACKEND_ENV, ComputeBackend, ComputeSettings, make_backend
from video_assets.models.settings import ClipSettings
from video_assets.orchestration.config_gen import config_class, config_fields
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
# ReadLimits field -> WarehouseResource field, where the resource's name says more (its Launchpad path and
# environment variable were named so before the limits were one definition).
LIMIT_FIELDS = {"max_bytes": "max_video_bytes", "timeout_sec": "video_timeout_sec"}
# retry_backoff_sec stays a core default: the retry schedule is not a per-deployment setting.
_LIMITS_NOT_CONFIGURED = ("retry_backoff_sec",)
_LIMIT_HINTS = settings_fields.type_hints(ReadLimits)
# resource field -> ReadLimits field, for every configurable limit
_LIMITS = {LIMIT_FIELDS.get(n, n): n for n in settings_fields.names(ReadLimits) if n not in _LIMITS_NOT_CONFIGURED}

# Source policy and limits: environment variable -> WarehouseResource field (read by from_env). Lists are
# comma-separated; a limit set to "none" is switched off. A limit's variable is VIDEO_ASSETS_ + its field.
SOURCE_ENV = {
    "VIDEO_ASSETS_ALLOWED_SCHEMES": "allowed_schemes",
    "VIDEO_ASSETS_ALLOWED_ROOTS": "allowed_local_roots",
    "VIDEO_ASSETS_ALLOWED_BUCKETS": "allowed_buckets",
    "VIDEO_ASSETS_ALLOWED_HOSTS": "allowed_hosts",
    "VIDEO_ASSETS_ALLOW_PRIVATE_NETWORKS": "allow_private_networks",
    **{f"VIDEO_ASSETS_{field.upper()}": field for field in _LIMITS},
}
_ENV_OF = {field: var for var, field in SOURCE_ENV.items()}
_LIST_FIELDS = {"allowed_schemes", "allowed_local_roots", "allowed_buckets", "allowed_hosts"}
_INT_LIMITS = {field for field, core in _LIMITS.items() if int in typing.get_args(_LIMIT_HINTS[core]) + (
    _LIMIT_HINTS[core],)}
_OPTIONAL_LIMITS = {field for field, core in _LIMITS.items() if type(None) in typing.get_args(_LIMIT_HINTS[core])}


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
        elif raw.lower() == "none" and field in _OPTIONAL_LIMITS:
            out[field] = None
        else:
            kind = int if field in _INT_LIMITS else float
            try:
                out[field] = kind(raw)
            except ValueError:
                # a limit is part of the source policy: refused by name, never replaced by a default unseen
                off = " (or 'none' for no limit)" if field in _OPTIONAL_LIMITS else ""
                raise ValueError(f"${var}={raw!r} is not {'an integer' if kind is int else 'a number'}{off}") from None
    return out


def _absolute(uri: str) -> str:
    """Local paths become absolute (relative ones resolve against the working directory); URIs stay."""
    uri = os.fspath(uri).strip()
    if scheme_of(uri) in ("", "file"):
        path = strip_file_scheme(uri)
        return os.path.abspath(os.path.expanduser(path))
    return uri.rstrip("/")


class _Warehouse(dg.ConfigurableResource):
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
    # -- what one video may cost: the fields of ReadLimits, generated below ---------------------------------

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
        return ReadLimits(**{core: getattr(self, field) for field, core in _LIMITS.items()})

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


WarehouseResource = config_class(
    "WarehouseResource", _Warehouse,
    config_fields(ReadLimits, exclude=_LIMITS_NOT_CONFIGURED, rename=LIMIT_FIELDS,
                  describe={field: f"(env {_ENV_OF[field]})" for field in _LIMITS}),
    module=__name__, doc=_Warehouse.__doc__)


class _ClipModel(dg.ConfigurableResource):
    """How the CLIP models run. Models are loaded once per process by the core's cache (keyed by name, folder,
    device and dtype) and shared by every step and operator in that process."""

    def settings(self) -> ModelSettings:
        # an empty string from the Launchpad means "the default", as None does
        return ModelSettings(**{k: (v if v != "" else None) for k, v in self.model_dump().items()})

    def load(self, which: str = "quality"):
        """Load (or get from the process-wide cache) the quality or keyframes model; raises ModelLoadError
        with the loader's message when the weights cannot be found."""
        from video_assets.models import load_clip
        from video_assets.operators.common import resolve_device

        s = self.settings()
        kw = s.operator_kwargs(which)
        clip = ClipSettings(**settings_fields.pick(ClipSettings, kw)).resolved(kw["clip_model_name"],
                                                                               resolve_device(s.device))
        return load_clip(clip.clip_model_name, clip.model_path or None, clip.device, clip.dtype, clip.batch_size)


ClipModelResource = config_class("ClipModelResource", _ClipModel, config_fields(ModelSettings),
                                 module=__name__, doc=_ClipModel.__doc__)


class _Compute(dg.ConfigurableResource):
    """Where the GPU steps run: ``local`` (this process; the default) or ``ray`` (a Ray cluster: each worker
    holds one operator with its model loaded once, and processes batches of manifest rows)."""

    @classmethod
    def from_env(cls, **overrides) -> "ComputeResource":
        kwargs = {"backend": os.environ.get(BACKEND_ENV) or "local"}
        kwargs.update(overrides)
        return cls(**kwargs)

    def settings(self) -> ComputeSettings:
        return ComputeSettings(**self.model_dump())

    def make(self) -> ComputeBackend:
        return make_backend(self.settings())


# max_task_retries stays a core default (how Ray's fault handling is bounded, not a deployment choice)
ComputeResource = config_class("ComputeResource", _Compute,
                               config_fields(ComputeSettings, exclude=("max_task_retries",)),
                               module=__name__, doc=_Compute.__doc__)


def default_resources(**overrides) -> dict:
    """The resources every asset needs, with defaults from the environment; ``overrides`` replace any of them
    by key (``clip``, ``warehouse``, ``compute``)."""
    resources = {"clip": ClipModelResource(), "warehouse": WarehouseResource.from_env(),
                 "compute": ComputeResource.from_env()}
    resources.update(overrides)
    return resources
