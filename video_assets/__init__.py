"""video_assets: video quality scores and query-relevant keyframes as data assets.

The core (``video``, ``models``, ``scoring``, ``keyframes``, ``storage``, ``operators``) has no Dagster
dependency; the Dagster layer lives in ``video_assets.definitions`` and calls the core.
"""

import os

# The model's OpenMP threads share the cores with the decode threads; libgomp's default policy spins at
# barriers and burns the CPU time those threads need (most of the tiny model's forward time in profiles). libgomp
# reads this once, when torch is loaded, so it must be set before any submodule imports torch. A value the user
# set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
