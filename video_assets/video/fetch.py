"""Fetching chosen frames from an open :class:`~video_assets.video.reader.VideoReader`, frame-exactly.

The wanted frames are fetched in ascending order, in *passes*: a pass starts by seeking to a keyframe (or by
going on from where the previous pass stopped) and decodes packets until the wanted frames run out, the stream
ends, or going on would cost more than seeking. Before each wanted frame :meth:`FrameFetch.seek_target` decides
between the two: seek to the keyframe at or before it, or decode forward, whichever decodes fewer frames (a seek
pays off only when that keyframe lies beyond the newest packet sent, by :data:`SEEK_MIN_GAIN_FRAMES`).

On the way to a wanted frame, packets whose frames are not wanted are decoded with ``skip_frame=NONREF`` (the
decoder drops non-reference frames, which nothing later needs; only decoders that take the setting per packet,
see ``reader.PER_PACKET_SKIP_DECODERS``). A packet that holds a wanted frame after which a seek follows is
drained at once, instead of decoding the following packets just to push that frame out.

A short way to the next keyframe is *hopped* instead of sought (local sources, up to :data:`HOP_MAX_FRAMES`
frames, timestamped streams): the packets before that keyframe are demuxed and not sent, and the decoder is
neither flushed nor drained, so its frame threads go on working on several wanted frames at once. At 1 fps on a
GOP of one second every wanted frame is a keyframe: each seek and drain decoded one frame on one core.

What a pass checks, because containers lie about seeks:

- after a seek into the file, the demuxer's timestamps must be the scan's, starting at a keyframe (MPEG-PS
  lands mid-GOP with interpolated timestamps; from then on the reader decodes forward from the start);
- a seek can land one GOP late (container seeks index by decode time; MPEG-TS): the pass starts again one
  keyframe earlier.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import av
import numpy as np

from video_assets.video.frame_index import ffmpeg_reason

if TYPE_CHECKING:
    from video_assets.video.reader import VideoReader

# Seeking flushes the decoder and its frame threads; continuing forward through a few frames is cheaper.
SEEK_MIN_GAIN_FRAMES = 4
# The most frames whose packets a hop reads without sending (a GOP of two seconds at 30 fps); a remote source
# seeks instead, so that a range request skips the bytes.
HOP_MAX_FRAMES = 64


class FrameFetch:
    """One fetch of ``wanted`` positions (ascending, unique, in range) from ``reader``; :meth:`frames` yields
    ``(position, frame)``. The state of where decoding stands has names here instead of loop flags."""

    def __init__(self, reader: VideoReader, wanted: list[int], rgb: bool):
        self.reader = reader
        self.index = reader.index
        self.cc = reader.stream.codec_context
        self.rgb = rgb
        self.wanted = wanted
        # plain ints: the loop compares them for every packet and frame (numpy scalars cost more)
        self.want_pts: list[int] = reader.index.pts[wanted].tolist()
        self.next = 0  # index into ``wanted`` of the next frame to produce
        self.fed_pos: int | None = None  # presentation position of the newest packet sent to the decoder
        self.demux = None  # the open packet iterator; None: the next pass must seek
        self.missing: list[int] = []  # wanted positions that could not be decoded
        self.retry_from: int | None = None  # set when a seek landed after the wanted frame: seek earlier
        # The current pass.
        self.seeked_to: int | None = None  # the keyframe it seeked to; None when it goes on decoding forward
        self.before_first_frame = False  # it seeked and no decoded frame has come out yet
        self.landing = 0  # after a seek into the file: 1 before the first packet is checked, 2 after; else 0
        self.progressed = False  # it has produced a wanted frame
        self.counted = 0  # output-order streams: the position of the next frame the decoder returns
        # hops need the decoder's every output matched by timestamp (an output-order stream counts them all)
        self.may_hop = not reader.output_order and not reader.remote
        self._wanted_at = {p: k for k, p in enumerate(self.want_pts)}
        self._sent: set[int] = set()  # indexes into ``wanted`` whose packet the decoder has (output or not)
        self.unsent = 0  # the first of them not sent: what a hop goes to

    def _jump(self, j: int) -> tuple[str, int] | None:
        """How to get to wanted frame ``j`` when decoding forward from the newest packet sent would decode more
        frames than starting at its keyframe: ``("hop", keyframe)`` or ``("seek", keyframe)``; None: go on."""
        kf = self.index.keyframe_at_or_before(self.wanted[j])
        if not self.reader.seeks_trusted or kf <= self.fed_pos + SEEK_MIN_GAIN_FRAMES:
            return None
        return ("hop", kf) if self.may_hop and kf - self.fed_pos <= HOP_MAX_FRAMES else ("seek", kf)

    def seek_target(self, j: int) -> int | None:
        """The seek-or-decode-forward decision for wanted frame ``j``: the keyframe to seek to when seeking
        decodes fewer frames than going on from the newest packet sent (and seeks work), else None (go on,
        hopping to the keyframe when that is short)."""
        jump = self._jump(j)
        return jump[1] if jump is not None and jump[0] == "seek" else None

    def _hopped(self, ts: int | None) -> bool:
        """The packet stamped ``ts`` lies before the keyframe that the first wanted frame not sent yet is hopped
        to: not sent. (Every earlier wanted frame is in the decoder with its references, which precede it in
        decoding order; frame threads may not have returned it yet.)"""
        if ts is None or self.unsent >= len(self.wanted):
            return False
        jump = self._jump(self.unsent)
        return jump is not None and jump[0] == "hop" and self.index.position_of(ts) < jump[1]

    def frames(self) -> Iterator[tuple[int, np.ndarray | av.VideoFrame]]:
        """Yield ``(position, frame)`` for each wanted position that can be decoded; the others are recorded
        in the reader's ``warnings`` and ``truncated``."""
        while self.next < len(self.wanted):
            self._start_pass()
            reached_eof = yield from self._decode_pass()
            if reached_eof and self.before_first_frame and self.seeked_to > 0:
                # The seek landed past the last keyframe (MPEG-TS seeks can land one GOP late): start earlier.
                self.retry_from = self.index.keyframe_at_or_before(self.seeked_to - 1)
                continue
            if reached_eof:
                self.missing.extend(self.wanted[self.next:])
                break
        if self.reader.skip_nonref:
            self.cc.skip_frame = "DEFAULT"
        if self.missing:
            self.reader.truncated = True
            self.reader.warnings.append(missing_frames_warning(self.missing))

    def _start_pass(self) -> None:
        if self.retry_from is not None:
            kf, self.retry_from = self.retry_from, None
        elif self.demux is None:
            kf = self.index.keyframe_at_or_before(self.wanted[self.next])
        else:
            kf = self.seek_target(self.next)  # None: keep decoding forward
        self.seeked_to = kf
        self.before_first_frame = kf is not None
        if kf is not None:
            self.reader.seek_to(kf)
            self.cc = self.reader.stream.codec_context  # a counted stream is reached by opening it again
            self.demux = self.reader.container.demux(self.reader.stream)
            self.fed_pos = kf - 1
            self.counted = kf
            # the seek flushed what the decoder had not returned: those frames are sent again from here
            self._sent.clear()
            self.unsent = self.next
        self.landing = 1 if kf is not None and kf > 0 else 0
        self.progressed = False

    def _decode_pass(self) -> Iterator[tuple[int, np.ndarray | av.VideoFrame]]:
        """Send packets and yield the wanted frames until the pass stops; returns True when it stopped because
        the stream ended (or could not be demuxed further), False when it stopped on purpose."""
        reader = self.reader
        try:
            for packet in self.demux:
                reader.deadline.check()
                # Packets an edit list hides (is_discard) are decoded all the same: the first shown frames
                # reference them (the keyframe before an MP4 edit list's start); FFmpeg drops their frames.
                ts = self.index.unwrapped(packet.pts if packet.pts is not None else packet.dts)
                if self.landing and ts is not None and not packet.is_discard:
                    if not self._lands_as_scanned(ts, packet.is_keyframe):
                        # MPEG-PS: a seek lands mid-GOP, and the parser then interpolates the timestamps of
                        # packets without their own PTS differently than the linear scan did (half a frame
                        # off), so frames cannot be matched. Decode forward from the start from now on.
                        reader.seeks_trusted = False
                        self.retry_from = 0
                        return False
                    self.landing = 2
                if self._hopped(ts):
                    reader.stats.packets_hopped += 1
                    continue
                next_before = self.next
                frames, drain = self._send(packet, ts)
                if frames is None:
                    continue
                yield from self._take(frames)
                if self.retry_from is not None or self.next >= len(self.wanted):
                    return False
                if drain:
                    if self.next == next_before and self.before_first_frame and self.seeked_to > 0:
                        # Nothing decoded since the seek: it landed mid-GOP (MPEG-TS). Start earlier.
                        self.retry_from = self.index.keyframe_at_or_before(self.seeked_to - 1)
                    elif self.next == next_before:  # drained without producing it: corrupt data
                        self.missing.append(self.wanted[self.next])
                        self.next += 1
                    self.demux = None  # the decoder is drained: the next wanted frame needs a seek
                    return False
                if self.progressed and self.seek_target(self.next) is not None:
                    return False  # cheaper to seek than to decode forward to the next wanted frame
        except av.error.FFmpegError as e:
            reader.warnings.append(f"demuxing failed ({ffmpeg_reason(e)})")
        return True

    def _lands_as_scanned(self, ts: int, keyframe: bool) -> bool:
        """After a seek: the packet's timestamp is one the scan saw (the first packet: at a keyframe)."""
        if self.landing == 1:
            return keyframe and self.index.has_frame_at(ts, keyframe=True)
        return self.index.has_frame_at(ts)

    def _drains_after(self, ts: int | None) -> bool:
        """The packet stamped ``ts`` holds the next wanted frame and a seek (or nothing) follows it. Its
        references were sent before it and every earlier wanted frame is out already, so draining the decoder
        after it loses nothing. (Output order: a packet's timestamp names no frame.)"""
        if ts is None or ts != self.want_pts[self.next] or self.reader.output_order:
            return False
        return self.next + 1 >= len(self.wanted) or self.seek_target(self.next + 1) is not None

    def _send(self, packet, ts: int | None) -> tuple[Iterable[av.VideoFrame] | None, bool]:
        """Send ``packet`` (stamped ``ts``) to the decoder: the frames it returns, or None when the decoder
        rejects the packet; and whether the decoder was drained after it (see :meth:`_drains_after`)."""
        reader = self.reader
        if ts is not None:
            # Frames before the next wanted one are only needed if other frames reference them.
            if reader.skip_nonref:
                self.cc.skip_frame = "NONREF" if ts < self.want_pts[self.next] else "DEFAULT"
            self.fed_pos = max(self.fed_pos, self.index.position_of(ts))
            k = self._wanted_at.get(ts)
            if k is not None:
                self._sent.add(k)
                while self.unsent in self._sent:
                    self.unsent += 1
        elif reader.skip_nonref:
            self.cc.skip_frame = "DEFAULT"  # the flush packet at EOF
        reader.stats.packets_sent += 1
        drain = self._drains_after(ts)
        try:
            frames = packet.decode()
            if drain:
                frames = list(frames) + list(self.cc.decode(None))
        except av.error.FFmpegError:
            reader.stats.decode_errors += 1
            return None, drain
        return frames, drain

    def _take(self, frames: Iterable[av.VideoFrame]) -> Iterator[tuple[int, np.ndarray | av.VideoFrame]]:
        """Match decoded frames to the wanted ones: yield those wanted, record as missing those the decoder
        passed without producing; stop (``retry_from`` set) when the seek landed after the wanted frame."""
        reader = self.reader
        for frame in frames:
            reader.stats.frames_decoded += 1
            reader.limits.check_decoded_frames(reader.description, reader.stats.frames_decoded)
            fpts = self.index.unwrapped(frame.pts)
            if reader.output_order:
                fpts = int(self.index.pts[self.counted]) if self.counted < len(self.index) else None
                self.counted += 1
            if fpts is None:
                continue
            if self.before_first_frame and fpts > self.want_pts[self.next] and self.seeked_to > 0:
                # Container seek indexes by decode time and can land one GOP late (B-frames).
                self.retry_from = self.index.keyframe_at_or_before(self.seeked_to - 1)
                return
            self.before_first_frame = False
            while self.next < len(self.wanted) and self.want_pts[self.next] < fpts:
                self.missing.append(self.wanted[self.next])  # the decoder passed it without producing it
                self.next += 1
            if self.next < len(self.wanted) and self.want_pts[self.next] == fpts:
                # the header's size was checked; a stream can still switch to a larger one
                reader.limits.check_frame_size(reader.description, frame.width, frame.height)
                yield self.wanted[self.next], (reader.rgb_array(frame) if self.rgb else frame)
                self.next += 1
                self.progressed = True


def missing_frames_warning(missing: list[int]) -> str:
    """The warning for wanted frames that could not be decoded (also used to attribute them per consumer when
    one fetch serves several plans)."""
    return (f"{len(missing)} wanted frame(s) could not be decoded (truncated or corrupt data), first at index "
            f"{missing[0]}")
