"""Long work in worker threads: training (:class:`TrainingJob`) and any ``fn(progress=, stop=)`` (:class:`Job`).

The worker never calls streamlit; the page reads a consistent snapshot under a
lock from a fragment that reruns on a timer, so widget clicks (which rerun the
page) never kill a run, and a Stop button can set the run's ``stop`` event.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ssviz.errors import SsvizError, StoppedError
from ssviz.train import Canary, TrainConfig, train


class TrainingJob:
    """One training run; ``snapshot()`` is safe to call from any thread."""

    def __init__(self, text: str, config: TrainConfig, canary: Canary | None, save_dir: Path, name: str):
        self.config, self.canary, self.name = config, canary, name
        self.save_dir = Path(save_dir)
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._epochs: list[dict] = []
        self._batch = (0, 0, None)  # (batch, batches per epoch, loss)
        self._status = "starting"
        self.saved_path: Path | None = None
        self.error: str | None = None
        self.started = time.perf_counter()
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, args=(text,), daemon=True, name=f"train-{name}")
        self.thread.start()

    # --- worker side -------------------------------------------------------------------
    def _on_batch(self, b: int, n: int, loss: float) -> None:
        with self._lock:
            self._batch = (b, n, loss)
            self._status = "training"

    def _on_epoch(self, record: dict) -> None:
        with self._lock:
            self._epochs.append(dict(record))

    def _run(self, text: str) -> None:
        try:
            result = train(text, self.config, self.canary, on_epoch=self._on_epoch, on_batch=self._on_batch,
                           stop=self.stop)
            if not result.epochs:
                raise StoppedError("stopped before the first epoch finished: nothing to save")
            stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
            path = self.save_dir / f"{self.name}-{stamp}.safetensors"
            result.save(path)
            with self._lock:
                self.saved_path = path
                self._status = "stopped early, saved" if result.stopped else "finished, saved"
        except SsvizError as e:
            with self._lock:
                self.error = str(e)
        except Exception as e:  # a bug: reported as one line on the page
            with self._lock:
                self.error = f"internal error: {type(e).__name__}: {e}"
        finally:
            self.seconds = time.perf_counter() - self.started

    # --- page side ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def snapshot(self) -> dict:
        """Progress so far: fraction done, status line, per-epoch records, saved path, error."""
        with self._lock:
            b, n, loss = self._batch
            done = len(self._epochs) + (b / n if n and b < n else 0.0)
            status = self._status
            if self.running and n:
                status = (f"epoch {min(len(self._epochs) + 1, self.config.epochs)}/{self.config.epochs}, "
                          f"batch {b}/{n}, loss {loss:.3f}" if b < n else
                          f"epoch {len(self._epochs) + 1}: measuring validation loss and canary exposure")
            return {"fraction": min(1.0, done / self.config.epochs), "status": status,
                    "epochs": list(self._epochs), "saved_path": self.saved_path, "error": self.error,
                    "running": self.running, "seconds": time.perf_counter() - self.started}


QUICK_WAIT = 1.0  # seconds the page waits for a new job before showing progress (short runs show no panel)


class Job:
    """``fn(progress=..., stop=...)`` in a worker thread; ``key`` names its inputs (the page's cache key).

    Outcome: ``result``, or ``error`` (one line; ``stopped`` when the user stopped it).
    """

    def __init__(self, key: tuple, label: str, fn: Callable):
        self.key, self.label = key, label
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._done = (0, 0)
        self.result = None
        self.error: str | None = None
        self.stopped = False
        self.started = time.perf_counter()
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True, name=f"job-{label}")
        self.thread.start()

    def _progress(self, done: int, total: int) -> None:
        with self._lock:
            self._done = (done, total)

    def _run(self, fn: Callable) -> None:
        try:
            self.result = fn(progress=self._progress, stop=self.stop)
        except StoppedError as e:
            self.error, self.stopped = str(e), True
        except SsvizError as e:
            self.error = str(e)
        except Exception as e:  # a bug: reported as one line on the page
            self.error = f"internal error: {type(e).__name__}: {e}"

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self, seconds: float) -> bool:
        """Block up to ``seconds`` for the job to finish; True when it has."""
        self.thread.join(seconds)
        return not self.running

    def snapshot(self) -> tuple[float, str]:
        """(fraction done, status line) for a progress bar."""
        with self._lock:
            done, total = self._done
        seconds = time.perf_counter() - self.started
        frac = min(1.0, done / total) if total else 0.0
        counts = f" {done:,} / {total:,}" if total else ""
        return frac, f"{self.label}{counts} ({seconds:.0f} s)" + (" · stopping..." if self.stop.is_set() else "")
