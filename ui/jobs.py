"""Long work in a worker thread: one :class:`Job` for every kind (scoring, searches, training).

The worker never calls streamlit; the page reads a consistent :meth:`Job.snapshot`
under a lock from a fragment that reruns on a timer (``ui.widgets.job_panel``), so
widget clicks (which rerun the page) never kill a run, and a Stop button sets the
run's ``stop`` event. Training is a Job too (:func:`training_job`): its progress
counts batches and its per-epoch records feed a live chart.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ssviz.errors import SsvizError, StoppedError
from ssviz.messages import clip
from ssviz.scoring import human_seconds
from ssviz.paths import claim_unique

QUICK_WAIT = 1.0  # seconds the page waits for a new job before showing progress (short runs show no panel)


@dataclass(frozen=True)
class Snapshot:
    """What a progress panel draws: a consistent copy taken under the job's lock."""
    fraction: float
    text: str
    records: list[dict] = field(default_factory=list)
    running: bool = False
    seconds: float = 0.0


class Job:
    """``fn(progress=..., stop=...)`` in a worker thread; ``key`` names its inputs (the page's cache key).

    ``progress(done, total, status=None)`` is the library's progress callback (``status`` replaces the
    count in the panel); :meth:`record` adds a per-step record (training: one per epoch) the page can
    draw while the job runs. Outcome: ``result``, or ``error`` (one line; ``stopped`` when the user
    stopped it). Call :meth:`start` once the job is set up.
    """

    def __init__(self, key: tuple, label: str, fn: Callable, meta: dict | None = None):
        self.key, self.label = key, label
        self.meta = dict(meta or {})  # what the page needs to draw the job (e.g. a training's config)
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._done: tuple[int, int, str | None] = (0, 0, None)
        self._records: list[dict] = []
        self.result = None
        self.error: str | None = None
        self.stopped = False
        self.started = time.perf_counter()
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True, name=f"job-{label}")

    def start(self) -> "Job":
        self.started = time.perf_counter()
        self.thread.start()
        return self

    # --- worker side -------------------------------------------------------------------
    def progress(self, done: int, total: int, status: str | None = None) -> None:
        with self._lock:
            self._done = (done, total, status)

    def record(self, record: dict) -> None:
        with self._lock:
            self._records.append(dict(record))

    def _run(self, fn: Callable) -> None:
        try:
            self.result = fn(progress=self.progress, stop=self.stop)
        except StoppedError as e:
            self.error, self.stopped = clip(e, 300), True
        except SsvizError as e:
            self.error = clip(e, 300)
        except Exception as e:  # a bug: reported as one line on the page
            self.error = clip(f"internal error: {type(e).__name__}: {e}", 300)
        finally:
            self.seconds = time.perf_counter() - self.started

    # --- page side ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    @property
    def records(self) -> list[dict]:
        with self._lock:
            return list(self._records)

    def wait(self, seconds: float) -> bool:
        """Block up to ``seconds`` for the job to finish; True when it has."""
        self.thread.join(seconds)
        return not self.running

    def snapshot(self) -> Snapshot:
        """Fraction done and a status line for a progress bar, and the records so far."""
        with self._lock:
            done, total, status = self._done
            records = list(self._records)
        running = self.running
        seconds = (time.perf_counter() - self.started) if running else self.seconds
        frac = min(1.0, done / total) if total else 0.0
        detail = f": {status}" if status else (f" {done:,} / {total:,}" if total else "")
        left = ""
        if running and total and 0 < done < total and seconds >= 2:  # a rate is known: the time left at it
            left = f", about {human_seconds(seconds * (total - done) / done)} left"
        text = f"{self.label}{detail} ({seconds:.0f} s{left})" + (" · stopping..." if self.stop.is_set() else "")
        return Snapshot(frac, text, records, running, seconds)


def training_job(key: tuple, label: str, run: Callable, epochs: int, meta: dict | None = None) -> Job:
    """A Job over ``run(on_epoch=, on_batch=, stop=)`` (the callbacks of :func:`ssviz.train.train`).

    Progress counts batches over ``epochs`` passes through the data (a defense that trains extra
    models, such as LPD, passes their epochs too); each epoch's record is kept with :meth:`Job.record`.
    """
    passes, last = 0, 0

    def on_batch(b: int, n: int, loss: float) -> None:
        nonlocal passes, last
        if b < last:  # the batch counter restarted: the previous pass is done
            passes += 1
        last = b
        status = (f"epoch {min(passes + 1, epochs)}/{epochs}, batch {b}/{n}, loss {loss:.3f}" if b < n else
                  f"epoch {min(passes + 1, epochs)}: measuring validation loss and canary exposure")
        job.progress(passes * n + b, epochs * n, status)

    job = Job(key, label, lambda progress, stop: run(on_epoch=job.record, on_batch=on_batch, stop=stop), meta)
    return job


def train_and_save(text: str, config, canary, save_dir: Path, name: str) -> Job:
    """Train ``config`` on ``text`` with ``canary`` and save the model under ``save_dir`` (checked first).

    ``meta`` holds ``config`` and ``canary``; the result is ``{"path", "stopped"}``. Stopping after an
    epoch saves the model so far; stopping before the first one ends with an error (nothing to save).
    """
    from ssviz.train import train

    # a name no other session can take (time plus a random part, created exclusively): two sessions training in
    # the same second never share, overwrite or read each other's model
    folder = config.transformer  # a transformer saves a model folder, a character model one file
    path = claim_unique(save_dir, name, "" if folder else ".safetensors", directory=folder)
    stamp = path.stem[len(name) + 1:]

    def run(on_epoch, on_batch, stop) -> dict:
        try:
            result = train(text, config, canary, on_epoch=on_epoch, on_batch=on_batch, stop=stop)
            if not result.epochs:
                raise StoppedError("stopped before the first epoch finished: nothing to save")
            result.save(path)
        except BaseException:
            if path.is_file() and path.stat().st_size == 0:
                path.unlink(missing_ok=True)  # the empty placeholder that claimed the name
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
            raise
        return {"path": path, "stopped": result.stopped, "warning": result.warning}

    return training_job(("train", name, stamp), f"Training {name}", run, config.epochs,
                        {"config": config, "canary": canary})
