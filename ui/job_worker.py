"""The process side of an app job: run one pickled ``fn(progress=, stop=)`` and stream what happens.

A job runs in its own process so that the server's page reruns (and their garbage collections) never
take the interpreter lock from it, and a session that is gone can end it by force. Processes are forked
from a fork server that imported torch but never ran it (a process forked after torch's thread pool
started would hang in its first parallel operation). Messages to the server, each one pickled tuple:
``("progress", done, total, status)``, ``("record", dict)``, then ``("result", value)`` or
``("error", line, stopped)``. Imports no streamlit. Both ends of the pipe are this server: the payload is
its own pickle of its own objects (models were loaded safely before), never bytes from a file or a user.
"""

from __future__ import annotations

import os
import threading
import time

import cloudpickle

from ssviz.errors import SsvizError, StoppedError
from ssviz.messages import clip

PRELOAD = ["ui.job_worker", "torch", "numpy", "ssviz.scoring", "ssviz.exposure", "ssviz.extraction", "ssviz.train"]
NICE = 10         # added to the job process's niceness
SEND_EVERY = 0.1  # seconds between progress messages (the panel redraws twice a second)


class Channel:
    """What the job's function sees as ``progress``: ``progress(done, total, status=None)`` and
    ``progress.record(dict)`` (a training's per-epoch records for the live chart)."""

    describes = True  # the panel shows a search's status line (ssviz.progress.tell)

    def __init__(self, send):
        self._send = send
        self._pending = None
        self._last = 0.0

    def __call__(self, done: int, total: int, status: str | None = None) -> None:
        self._pending = ("progress", int(done), int(total), status)
        now = time.monotonic()
        if now - self._last >= SEND_EVERY or (total and done >= total):
            self.flush()
            self._last = now

    def record(self, record: dict) -> None:
        self.flush()
        self._send(("record", dict(record)))

    def flush(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._send(pending)


def outcome(fn, progress, stop) -> tuple:
    """``("result", value)`` or ``("error", one line, stopped?)``: the same for a thread and a process."""
    try:
        return ("result", fn(progress=progress, stop=stop))
    except StoppedError as e:
        return ("error", clip(e, 300), True)
    except SsvizError as e:
        return ("error", clip(e, 300), False)
    except Exception as e:  # a bug: reported as one line on the page
        return ("error", clip(f"internal error: {type(e).__name__}: {e}", 300), False)


def packed(message: tuple) -> bytes:
    """``message`` pickled for the server; an unpicklable result becomes an error line, not a lost job."""
    try:
        return cloudpickle.dumps(message)
    except Exception as e:
        return cloudpickle.dumps(("error", clip(f"internal error: the result could not be sent back: "
                                                f"{type(e).__name__}: {e}", 300), False))


def roundtrip(message: tuple) -> tuple:
    """``message`` as the server receives it from a process."""
    return cloudpickle.loads(packed(message))


def _orphan_watch(parent: int) -> None:
    """End this process when the server that started it is gone (its fork server exits with it)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def main(payload: bytes, conn, stop) -> None:
    """The child process: unpickle, run, send every message, exit.

    It runs at a lower priority than the server, so on a busy machine the pages stay quick and the job
    takes what the server leaves (on an idle one, everything)."""
    try:
        os.nice(NICE)
    except OSError:
        pass
    threading.Thread(target=_orphan_watch, args=(os.getppid(),), daemon=True).start()

    def send(message: tuple) -> None:
        conn.send_bytes(cloudpickle.dumps(message))

    channel = Channel(send)
    try:
        fn = cloudpickle.loads(payload)
    except Exception as e:
        result = ("error", clip(f"internal error: the job could not be started: {type(e).__name__}: {e}", 300), False)
    else:
        result = outcome(fn, channel, stop)
    channel.flush()
    conn.send_bytes(packed(result))
    conn.close()
