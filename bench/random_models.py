"""Random-weight copies of the real CLIP architectures, laid out as a local model folder.

Weights cannot be downloaded here, and speed does not depend on weight values: benchmarks save
``open_clip.create_model(arch, pretrained=None)`` under ``{model_path}/{hf_name}/`` and load it through the
project's normal loader (``load_clip(hf_name, model_path)``), so the measured path is the production one.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch

from video_assets.models import HF_OPENAI_ALIASES

ROOT = Path(__file__).resolve().parent / ".models"


def random_model_path(hf_name: str, root: Path = ROOT) -> str:
    """Ensure ``{root}/{hf_name}/open_clip_pytorch_model.bin`` holds random weights; return ``root``."""
    arch, _ = HF_OPENAI_ALIASES[hf_name]
    target = root / hf_name / "open_clip_pytorch_model.bin"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=True)
        tmp = target.with_name(target.name + ".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(target)  # a run stopped mid-save (a time-boxed device step) leaves no truncated model
    return str(root)
