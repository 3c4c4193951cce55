"""video_assets: video quality scores and query-relevant keyframes as data assets.

The core (``video``, ``models``, ``scoring``, ``keyframes``, ``storage``, ``operators``) has no Dagster
dependency; the Dagster layer lives in ``video_assets.definitions`` and calls the core.
"""

__version__ = "0.1.0"
