"""``python -m video_assets COMMAND``: see :mod:`video_assets.cli`."""

import sys

from video_assets.cli import main

sys.exit(main())
