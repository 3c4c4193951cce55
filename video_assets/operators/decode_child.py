"""The decode process's side of :mod:`video_assets.operators.decode_processes`: its loop (tasks and videos in,
chunks through shared-memory slots, meta or error out) and its ``emit``. Imports nothing heavy at module level:
torch comes in with the first task."""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.shared_memory import SharedMemory
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Test-only fault injection, read by the child for every video: "exit:<substring>" makes the process os._exit(3)
# on a video whose description contains <substring>, "sleep:<substring>" makes it sleep for an hour there.
FAULT_ENV = "VIDEO_ASSETS_DECODE_PROCESS_FAULT"


class _Cancelled(Exception):
    pass


class _ChildEmit:
    """The child's ``emit``: copies a chunk into a free slot and tells the parent which."""

    def __init__(self, conn, slots: list[SharedMemory]):
        self.conn, self.slots = conn, slots
        self.free = list(range(len(slots)))

    def _handle(self, msg, busy: bool) -> None:
        if msg is None:
            os._exit(0)  # the parent closes the pool
        if msg[0] == "ack":
            self.free.append(msg[1])
        elif msg[0] == "cancel" and busy:
            raise _Cancelled()

    def drain(self, busy: bool) -> None:
        while self.conn.poll(0):
            self._handle(self.conn.recv(), busy)

    def __call__(self, pixels: torch.Tensor, stream: int = 0) -> None:
        import torch

        if not pixels.shape[0]:
            return
        self.drain(True)
        channels_last = pixels.ndim == 4 and not pixels.is_contiguous() and \
            pixels.is_contiguous(memory_format=torch.channels_last)
        flat = (pixels.permute(0, 2, 3, 1) if channels_last else pixels.contiguous()).reshape(-1)
        nbytes = flat.numel() * flat.element_size()
        dtype = str(pixels.dtype).removeprefix("torch.")
        while not self.free:  # at most one chunk per slot is in flight, whatever carries it: memory is bounded
            self._handle(self.conn.recv(), True)
        slot = self.free.pop()
        own = SharedMemory(create=True, size=max(1, nbytes)) if nbytes > self.slots[slot].size else None
        torch.frombuffer((own or self.slots[slot]).buf, dtype=pixels.dtype, count=flat.numel()).copy_(flat)
        self.conn.send(("chunk", stream, slot, own.name if own else None, tuple(pixels.shape), dtype, channels_last))
        if own is not None:
            own.close()  # the parent copies it out and removes it


def _fault(item) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    kind, _, needle = spec.partition(":")
    if needle and needle in str(getattr(item, "description", item)):
        if kind == "exit":
            os._exit(3)
        if kind == "sleep":
            time.sleep(3600)


def _sendable(e: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - an exception that does not pickle goes as its text
        return RuntimeError(f"{type(e).__name__}: {e}")


def child_main(conn, slot_names: list[str], torch_threads: int) -> None:
    """A decode process: wait for tasks and videos on ``conn``; exits when the parent closes it or goes away."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes the pool
    torch.set_num_threads(torch_threads)
    slots = [SharedMemory(name=n) for n in slot_names]
    emit = _ChildEmit(conn, slots)
    tasks: dict[str, Callable] = {}  # token -> a SharedDecode.prepare
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if msg is None or msg[0] in ("ack", "cancel"):
            emit._handle(msg, busy=False)  # a cancel that came after the video ended is moot
        elif msg[0] == "task":
            tasks.clear()  # one operator's settings per call: keep only the newest
            tasks[msg[1]] = pickle.loads(msg[2])
        elif msg[0] == "probe":
            conn.send(("probe", os.getpid(), sorted(m for m in ("open_clip", "transformers") if m in sys.modules)))
        elif msg[0] == "item":
            _, token, item = msg
            try:
                _fault(item)
                meta = tasks[token](item, emit)
            except _Cancelled:
                conn.send(("failed", RuntimeError("cancelled")))
            except BaseException as e:  # noqa: BLE001 - becomes this video's error in the parent
                conn.send(("failed", _sendable(e)))
            else:
                try:
                    conn.send(("done", meta))
                except Exception as e:  # noqa: BLE001 - a meta that does not pickle
                    conn.send(("failed", _sendable(e)))
