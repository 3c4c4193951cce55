"""Resolve a ``clip_model_name`` into what the loader needs: an open_clip architecture, a weight source, and
the folders under ``model_path`` that may hold a local copy.

Accepted forms (see :data:`ACCEPTED_FORMS`):

* Hugging Face names of the OpenAI CLIPs: ``openai/clip-vit-base-patch32`` -> ``ViT-B-32/openai``,
  ``openai/clip-vit-base-patch16`` -> ``ViT-B-16/openai``,
  ``openai/clip-vit-large-patch14`` -> ``ViT-L-14/openai``,
  ``openai/clip-vit-large-patch14-336`` -> ``ViT-L-14-336/openai``;
* open_clip's own ``ARCH/PRETRAINED`` names, e.g. ``ViT-L-14/openai`` or ``ViT-B-32/laion2b_s34b_b79k``;
* ``hf-hub:org/repo`` for a hub repository in open_clip format (``open_clip_config.json`` + weights);
* ``video-assets/tiny-clip``: a tiny open_clip configuration shipped in this package, random weights from a
  fixed seed, for tests and smoke runs (no download, deterministic);
* any other relative name (``org/repo``) that names an existing folder under ``model_path``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip

from video_assets.errors import ModelLoadError

CONFIG_DIR = Path(__file__).parent / "configs"

TINY_CLIP_NAME = "video-assets/tiny-clip"
TINY_CLIP_ARCH = "tiny-clip"  # the config's file stem, which is its key in open_clip's registry
TINY_CLIP_SEED = 0

# Hugging Face (transformers) names of the OpenAI CLIPs -> open_clip (architecture, pretrained tag)
HF_OPENAI_ALIASES: dict[str, tuple[str, str]] = {
    "openai/clip-vit-base-patch32": ("ViT-B-32", "openai"),
    "openai/clip-vit-base-patch16": ("ViT-B-16", "openai"),
    "openai/clip-vit-large-patch14": ("ViT-L-14", "openai"),
    "openai/clip-vit-large-patch14-336": ("ViT-L-14-336", "openai"),
}

ACCEPTED_FORMS = (
    "accepted clip_model_name forms: "
    + ", ".join(sorted(HF_OPENAI_ALIASES))
    + " (Hugging Face names of the OpenAI CLIPs); open_clip 'ARCH/PRETRAINED' names such as "
    "'ViT-L-14/openai' or 'ViT-B-32/laion2b_s34b_b79k' (see open_clip.list_pretrained()); 'hf-hub:org/repo' "
    f"for a hub repository in open_clip format; '{TINY_CLIP_NAME}' (built-in tiny test model, random "
    "weights); or any 'org/name' that is a folder under model_path holding an open_clip checkpoint or a "
    "transformers CLIP folder"
)

_registered = False


def register_builtin_configs() -> None:
    """Add this package's open_clip configs (``configs/*.json``) to open_clip's registry, once per process."""
    global _registered
    if not _registered:
        if TINY_CLIP_ARCH not in open_clip.list_models():
            open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def builtin_config(arch: str) -> dict[str, Any]:
    """The model config of a config file shipped in ``configs/`` (a fresh dict)."""
    with open(CONFIG_DIR / f"{arch}.json", encoding="utf-8") as f:
        return json.load(f)


@dataclass(frozen=True)
class ResolvedClipName:
    """What a ``clip_model_name`` means.

    kind: ``"builtin"`` (tiny-clip), ``"pretrained"`` (open_clip arch + tag, including the HF aliases),
    ``"hf-hub"`` (open_clip-format hub repo) or ``"local"`` (only loadable from a folder under model_path).
    """

    name: str  # canonical name: the cache key and what ClipModel.name reports
    kind: str
    arch: str | None = None  # open_clip architecture when known from the name
    pretrained: str | None = None  # open_clip pretrained tag
    hub_repo: str | None = None  # for kind == "hf-hub"
    local_subdirs: tuple[str, ...] = field(default_factory=tuple)  # folders looked for under model_path
    download_repo: str | None = None  # the repo a user can download into the local folder

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        if self.kind == "pretrained" and self.arch and self.pretrained:
            return open_clip.get_pretrained_cfg(self.arch, self.pretrained) or {}
        return {}

    @property
    def quick_gelu(self) -> bool:
        """OpenAI weights (and a few others) were trained with QuickGELU; open_clip's tag records it."""
        return bool(self.pretrained_cfg.get("quick_gelu", False))


def _is_safe_relative(name: str) -> bool:
    p = Path(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name


def resolve_clip_model_name(clip_model_name: str) -> ResolvedClipName:
    """Parse ``clip_model_name``; raise :class:`ModelLoadError` for names that cannot mean anything.

    A name of the ``org/name`` shape that is not a known alias or open_clip architecture resolves to kind
    ``"local"``: it can only be loaded from ``{model_path}/org/name`` (the loader says so if that is missing).
    """
    if not isinstance(clip_model_name, str) or not clip_model_name.strip():
        raise ModelLoadError(f"empty clip_model_name {clip_model_name!r}; {ACCEPTED_FORMS}")
    name = clip_model_name.strip()
    register_builtin_configs()

    if name.lower() == TINY_CLIP_NAME:
        return ResolvedClipName(name=TINY_CLIP_NAME, kind="builtin", arch=TINY_CLIP_ARCH,
                                local_subdirs=(TINY_CLIP_NAME,))

    alias = HF_OPENAI_ALIASES.get(name.lower())
    if alias is not None:
        arch, tag = alias
        canonical = name.lower()
        return ResolvedClipName(name=canonical, kind="pretrained", arch=arch, pretrained=tag,
                                local_subdirs=tuple(dict.fromkeys((canonical, name))),
                                download_repo=canonical)

    if name.startswith("hf-hub:"):
        repo = name[len("hf-hub:"):].strip("/")
        if repo.count("/") != 1 or not _is_safe_relative(repo):
            raise ModelLoadError(f"bad hub repository in clip_model_name {name!r}: expected "
                                 f"'hf-hub:org/repo'; {ACCEPTED_FORMS}")
        return ResolvedClipName(name=f"hf-hub:{repo}", kind="hf-hub", hub_repo=repo, local_subdirs=(repo,),
                                download_repo=repo)

    if name.count("/") == 1:
        arch, tag = name.split("/")
        if arch in open_clip.list_models() and arch != TINY_CLIP_ARCH:
            tags = open_clip.list_pretrained_tags_by_model(arch)
            if tag not in tags:
                # open_clip tags are lower case; accept e.g. 'ViT-L-14/OpenAI'
                lowered = {t.lower(): t for t in tags}
                if tag.lower() not in lowered:
                    raise ModelLoadError(
                        f"unknown pretrained tag {tag!r} for open_clip architecture {arch!r} in "
                        f"clip_model_name {name!r}; known tags: {', '.join(tags) or '(none)'}")
                tag = lowered[tag.lower()]
            hf_hub = (open_clip.get_pretrained_cfg(arch, tag) or {}).get("hf_hub", "")
            hf_hub = hf_hub.strip("/")  # 'org/repo/' or 'org/repo/file.bin'
            repo = hf_hub.rsplit("/", 1)[0] if hf_hub.count("/") > 1 else hf_hub
            canonical = f"{arch}/{tag}"
            return ResolvedClipName(name=canonical, kind="pretrained", arch=arch, pretrained=tag,
                                    local_subdirs=tuple(dict.fromkeys((canonical, name))),
                                    download_repo=repo or None)

    if name in open_clip.list_models():
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ModelLoadError(
            f"clip_model_name {name!r} names an open_clip architecture but no weights; add a pretrained tag, "
            f"e.g. {name}/{tags[0] if tags else 'openai'} (known tags: {', '.join(tags) or '(none)'}); "
            f"{ACCEPTED_FORMS}")

    if "/" in name and _is_safe_relative(name):
        return ResolvedClipName(name=name, kind="local", local_subdirs=(name,), download_repo=name)

    raise ModelLoadError(f"unknown clip_model_name {name!r}; {ACCEPTED_FORMS}")
