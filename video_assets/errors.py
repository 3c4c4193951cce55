"""Typed errors of the project. Every message names the input it is about and the cause."""


class VideoAssetsError(Exception):
    """Base class for errors raised on purpose by video_assets."""


class VideoSourceError(VideoAssetsError):
    """The source cannot be reached or read: missing file, 404, unreachable host, bad base64, empty object."""


class VideoDecodeError(VideoAssetsError):
    """The bytes were read but hold no decodable video: random bytes, truncated header, audio-only, still image."""


class ModelLoadError(VideoAssetsError):
    """A CLIP model cannot be resolved or loaded (unknown name, missing local folder, no network)."""


class SourcePolicyError(VideoSourceError):
    """The source points somewhere the configured source policy does not allow (scheme, folder, bucket, host,
    private or metadata address). Nothing was read."""


class LimitExceededError(VideoAssetsError):
    """A configured resource limit was exceeded for one video (bytes, duration, frame size, decoded frames,
    wall-clock time)."""


class OutputWriteError(VideoAssetsError):
    """An output (a keyframe image) cannot be written: no such bucket, access denied, a folder that cannot be
    created, a full disk. The input was read; the fault is the output's. ``output``: the output folder;
    ``reason``: the problem, the same for every write that fails alike."""

    def __init__(self, message: str, output: str = "", reason: str = ""):
        super().__init__(message)
        self.output, self.reason = output, reason

    def __reduce__(self):  # picklable with its fields (decode processes, Ray actors)
        return type(self), (str(self), self.output, self.reason)
