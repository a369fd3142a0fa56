"""Long work in a worker process: one :class:`Job` for every kind (scoring, searches, training).

The work runs in its own process (``ui.job_worker``), so the server's page reruns and their garbage
collections never starve it and a session that is gone can end it by force; a thread of the server
pumps its messages into the job. The page reads a consistent :meth:`Job.snapshot` under a lock from a
fragment that reruns on a timer (``ui.widgets.job_panel``), so widget clicks (which rerun the page)
never kill a run, and a Stop button sets the run's ``stop`` event. Training is a Job too
(:func:`training_job`): its progress counts batches and its per-epoch records feed a live chart.
"""

from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cloudpickle

from ssviz.errors import StoppedError
from ssviz.scoring import human_seconds
from ssviz.paths import claim_unique
from ui import job_worker

QUICK_WAIT = 1.0  # seconds the page waits for a new job before showing progress (short runs show no panel)
KILL_GRACE = 3.0  # seconds a stopped job's process has to return its partial result before it is ended
POLL = 0.05       # seconds between the pump's checks of its job's process and stop event
IN_PROCESS = True  # False: jobs run in a server thread, through the same pickling (tests that spy on the library)

_log = logging.getLogger("ssviz.app")
_context = None
_live: set = set()  # processes of running jobs, ended when the server exits


def _processes():
    """The fork-server context (started once, on the first job)."""
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(job_worker.PRELOAD)
        _context = ctx
        atexit.register(_end_all)
    return _context


def _end_all() -> None:
    for proc in list(_live):
        proc.kill()


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

    def __init__(self, key: tuple, label: str, fn: Callable, meta: dict | None = None, *, process: bool | None = None):
        self.key, self.label = key, label
        self.process = IN_PROCESS if process is None else process  # False: in a thread of the server (a function that cannot leave this process)
        self.pid: int | None = None
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
            try:
                payload = cloudpickle.dumps(fn)
            except Exception as e:  # still runs, in this thread: say why (a page passed something unpicklable)
                _log.warning("job %r runs in the server's thread: %s: %s", self.label, type(e).__name__, e)
                self._take(job_worker.outcome(fn, job_worker.Channel(self._take), self.stop))
                return
            if self.process:
                self._take(self._in_process(payload))
            else:  # the process's path without the fork: the function pickles (checked above), its outcome crosses
                outcome = job_worker.outcome(fn, job_worker.Channel(self._take), self.stop)
                self._take(job_worker.roundtrip(outcome))
        finally:
            self.seconds = time.perf_counter() - self.started

    def _take(self, message: tuple) -> None:
        """One message of the job's function (from its process, or from this thread)."""
        kind = message[0]
        if kind == "progress":
            self.progress(*message[1:])
        elif kind == "record":
            self.record(message[1])
        elif kind == "result":
            self.result = message[1]
        else:
            self.error, self.stopped = message[1], bool(message[2])

    def _in_process(self, payload: bytes) -> tuple:
        """Run the pickled function in a forked process; pump its messages until its outcome arrives.

        A stopped job that has not answered :data:`KILL_GRACE` seconds after its stop is ended; a process
        that dies without an outcome is reported as one line."""
        ctx = _processes()
        receive, send = ctx.Pipe(duplex=False)
        stop = ctx.Event()
        proc = ctx.Process(target=job_worker.main, args=(payload, send, stop), name=f"job-{self.label}")
        proc.start()
        _live.add(proc)
        send.close()
        self.pid = proc.pid
        stopped_at = None
        try:
            while True:
                if self.stop.is_set():
                    stop.set()
                    stopped_at = stopped_at or time.monotonic()
                    if time.monotonic() - stopped_at > KILL_GRACE:
                        return ("error", "stopped (the run was ended without a partial result)", True)
                if receive.poll(POLL):
                    try:
                        message = cloudpickle.loads(receive.recv_bytes())
                    except EOFError:
                        return ("error", f"internal error: the job's process ended without an answer "
                                         f"(exit code {proc.join(1) or proc.exitcode})", False)
                    if message[0] in ("result", "error"):
                        return message
                    self._take(message)
        finally:
            if proc.is_alive():
                proc.join(0.5)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
            _live.discard(proc)
            receive.close()

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
    return Job(key, label, functools.partial(_training, run, epochs), meta)


class _Batches:
    """``on_batch`` of a training job: batches counted over every pass, with a status line."""

    def __init__(self, progress, epochs: int):
        self.progress, self.epochs = progress, epochs
        self.passes = self.last = 0

    def __call__(self, b: int, n: int, loss: float) -> None:
        if b < self.last:  # the batch counter restarted: the previous pass is done
            self.passes += 1
        self.last = b
        epoch = min(self.passes + 1, self.epochs)
        status = (f"epoch {epoch}/{self.epochs}, batch {b}/{n}, loss {loss:.3f}" if b < n else
                  f"epoch {epoch}: measuring validation loss and canary exposure")
        self.progress(self.passes * n + b, self.epochs * n, status)


def _training(run: Callable, epochs: int, progress, stop):
    return run(on_epoch=progress.record, on_batch=_Batches(progress, epochs), stop=stop)


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
