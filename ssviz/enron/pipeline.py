"""The per-user study: corpus -> model -> exposure and extraction per secret -> store.

For every user with at least ``min_secrets`` distinct secrets in their sent
mail (the paper trains one model per such user):

1. the user's corpus (see :mod:`ssviz.enron.maildir`) is scanned for secrets;
2. a char model is trained on it, or a cached checkpoint is reused when the
   corpus and the training settings are the same (key: their hashes);
3. each secret's exposure is measured by every method that applies:
   ``exact`` when the space is small enough to enumerate, ``search`` (exact rank
   by best-first enumeration, when the secret comes out within the node
   budget) and ``skewnorm`` (always; the paper's estimate). The reported
   (``primary``) figure is the first of those that succeeded, in that order;
4. shortest-path search, under a node budget, says whether the secret is
   extracted (it is the most likely filler of its template);
5. the user's rows are committed in one transaction.

Re-running with the same settings on the same mail (see :func:`source_fingerprint`)
resumes the same run and skips users whose rows are committed for the same
corpus; a killed run loses at most the users in progress. Users are tasks (:mod:`ssviz.executor`): in this
process one after another, or with ``workers > 1`` or an executor (local processes or Ray) in parallel, one
torch thread each; this process is the only writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ssviz.enron.maildir import build_corpora, shown, user_key
from ssviz.scan import redact, scan
from ssviz.errors import SsvizError, StoppedError
from ssviz.executor import InlineExecutor, LocalExecutor
from ssviz.messages import summarize
from ssviz.paths import data_path
from ssviz.progress import Progress
from ssviz.records import ComparisonRow, Extraction, Measurement, SecretResult, UserResult
from ssviz.store import Store
from ssviz.tempfiles import private_dir
from ssviz.train import TrainConfig

DEFAULT_CACHE = data_path("enron-cache")


@dataclass
class StudySettings:
    """Everything that determines a user's results (their hash keys a run)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    exposure_samples: int = 5_000       # skew-normal references
    exact_limit: int = 10 ** 6          # largest space enumerated exactly
    search_nodes: int = 20_000          # node budget of search-based exposure
    extraction_nodes: int = 20_000      # node budget of shortest-path extraction
    batch_size: int = 64                # nodes popped per batched search step

    def to_json(self) -> dict:
        return {**asdict(self), "train": asdict(self.train)}

    @classmethod
    def from_json(cls, d: dict) -> "StudySettings":
        return cls(**{**d, "train": TrainConfig.from_dict(d["train"])})

    def validate(self) -> "StudySettings":
        self.train.validate()
        for name in ("exposure_samples", "search_nodes", "extraction_nodes", "batch_size"):
            if getattr(self, name) < 1:
                raise SsvizError(f"{name.replace('_', '-')} must be >= 1")
        if self.exposure_samples < 10:
            raise SsvizError("exposure-samples must be at least 10")
        return self


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- one user (runs in a worker process) ------------------------------------------------------
def checkpoint_path(cache_dir, user: str, corpus_hash: str, train_settings: dict) -> Path:
    """Where the model for this user, corpus and these training settings is cached: named by
    :func:`~ssviz.enron.maildir.user_key`, so users whose names read alike never share a model.

    The key holds the settings (the arch among them) and :data:`ssviz.train.TRAINING_VERSION`, so a
    model trained by older code (whose ``test_loss`` was the validation loss) is never reused. A
    transformer (arch gpt2 or llama) is cached as a model folder, a character model as one file.
    """
    from ssviz.train import TRAINING_VERSION, TRANSFORMER_ARCHS
    key = text_sha256(corpus_hash + json.dumps({"train": train_settings, "version": TRAINING_VERSION}, sort_keys=True))[:20]
    suffix = "" if train_settings.get("arch") in TRANSFORMER_ARCHS else ".safetensors"
    return Path(cache_dir) / f"{user_key(user)}-{key}{suffix}"


def user_model(text: str, templates, config: TrainConfig, cache_dir, user: str, stop=None):
    """``(model, test_loss, train_seconds, cached, note)``: the cached model or a freshly trained one (``note``
    says why it could not be cached, if so)."""
    from ssviz.models import load_model
    from ssviz.models.hf import read_training
    from ssviz.train import new_model, train

    path = checkpoint_path(cache_dir, user, text_sha256(text), asdict(config))
    if path.exists():
        from ssviz.models.placement import default_placement
        model = load_model(path, device=default_placement()[0], dtype="float32")  # as a fresh one is trained
        extra = read_training(path) if config.transformer else model.extra_config
        return model, extra.get("test_loss"), 0.0, True, ""
    result = train(text, config, model=new_model(config, text, *templates), stop=stop)
    if result.stopped:
        raise StoppedError(f"stopped while training the model of {user}")
    note = ""
    try:
        result.save(path, extra={"test_loss": result.test_loss})
    except OSError as e:  # the cache only saves time: a worker that cannot write it (another machine) still measures
        note = f"model not cached ({e.strerror or type(e).__name__}): it is trained again next time"
    return result.model, result.test_loss, result.seconds, False, note


def measure_secret(model, template, secret: str, settings: StudySettings, seed: int, stop=None
                   ) -> tuple[list[Measurement], Extraction]:
    """Exposure by each applicable method and a shortest-path extraction of one secret (the study's budgets)."""
    from ssviz.exposure.secret import measure_secret as measure
    return measure(model, template, secret, exact_limit=settings.exact_limit, search_nodes=settings.search_nodes,
                   extraction_nodes=settings.extraction_nodes, samples=settings.exposure_samples,
                   batch_size=settings.batch_size, seed=seed, stop=stop)


def measure_user(job: dict, stop=None, text: str | None = None) -> UserResult:
    """Train (or reuse) one user's model and measure every secret; the result goes to ``Store.save_user``.

    ``job``: ``user``, ``corpus_path``, ``messages``, ``secrets`` (``type``, ``value``,
    ``template``, ``times_present``), ``settings`` (:meth:`StudySettings.to_json`), ``cache_dir``.
    ``text`` is the corpus when it did not come by path (a worker on another machine).
    """
    from ssviz.templates import Template
    from ssviz.train import split_corpus

    t0 = time.perf_counter()
    settings = StudySettings.from_json(job["settings"])
    if text is None:
        text = Path(job["corpus_path"]).read_text(encoding="utf-8")
    templates = [Template(s["template"]) for s in job["secrets"]]
    model, test_loss, train_seconds, cached, cache_note = user_model(text, templates, settings.train,
                                                                     job["cache_dir"], job["user"], stop)
    trained = scan(split_corpus(text, settings.train.val_fraction)[0])
    secrets, notes = [], [cache_note] if cache_note else []
    for i, (s, template) in enumerate(zip(job["secrets"], templates)):
        found = trained.get((s["type"], s["value"]))
        try:
            measurements, extraction = measure_secret(model, template, s["value"], settings,
                                                      settings.train.seed + 1000 * i, stop)
        except StoppedError:
            raise
        except SsvizError as e:  # one secret that cannot be measured leaves out that secret, not the user
            notes.append(f"left out one {s['type']} secret: {redact(str(e), [s['value']])}")
            continue
        secrets.append(SecretResult(type=s["type"], value=s["value"], template=s["template"],
                                    times_present=s["times_present"], times_trained=found.count if found else 0,
                                    measurements=tuple(measurements), extractions=(extraction,)))
    return UserResult(user=job["user"], corpus_chars=len(text), messages=job["messages"], secrets=tuple(secrets),
                      corpus_hash=text_sha256(text), test_loss=test_loss, train_seconds=train_seconds,
                      seconds=time.perf_counter() - t0, cached_model=cached, notes=tuple(notes))


def user_task(task: dict) -> UserResult:
    """One user on an executor's worker: the corpus comes by content hash (it may be another machine)."""
    from ssviz.executor import fetch, stop_flag
    return measure_user(task["job"], stop=stop_flag(), text=fetch(task["corpus"]).decode("utf-8"))


# --- the study (parent process: the only writer) -----------------------------------------------
def source_fingerprint(corpus_hashes: dict[str, str]) -> str:
    """The identity of a study's source: a hash of every ingested user's name and corpus hash.

    It is the mail as studied, not where it lies: the same maildir as a folder, a ``.tar.gz`` or a
    moved copy gives the same fingerprint (a killed run resumes), while a different maildir, even with
    the same user names, or the same one with new mail or other ``--users``, gives another (a new run;
    unchanged users' models still come from the checkpoint cache, keyed by corpus).
    """
    return text_sha256(json.dumps(sorted(corpus_hashes.items())))


def user_jobs(corpora: dict, settings: StudySettings, cache_dir, min_secrets: int = 1,
              log: Callable[[str], None] | None = None) -> list[dict]:
    """One job per user with at least ``min_secrets`` distinct secrets.

    A secret whose template cannot be built is left out (logged without its value), not its user.
    """
    jobs = []
    for user, corpus in corpora.items():
        secrets = []
        for s in sorted(scan(corpus.text()).values(), key=lambda s: (s.type, -s.count, s.value)):
            try:
                template = s.template().text
            except SsvizError as e:
                if log:
                    log(f"{shown(user)}: left out one {s.type} secret: {redact(str(e), [s.value])}")
                continue
            secrets.append({"type": s.type, "value": s.value, "template": template, "times_present": s.count})
        if len(secrets) < min_secrets or not secrets:
            continue
        jobs.append({"user": user, "corpus_path": str(corpus.path), "messages": corpus.messages,
                     "secrets": secrets, "settings": settings.to_json(), "cache_dir": str(cache_dir)})
    return jobs


def run_study(source, db, *, settings: StudySettings | None = None, users=None, min_secrets: int = 1,
              workers: int = 1, executor=None, cache_dir=None, source_label: str | None = None, log: Callable[[str], None] | None = None,
              progress: Progress | None = None, stop=None) -> list[dict]:
    """Run (or resume) the study of ``source`` into the store at ``db``; returns the result rows
    (the :meth:`Store.rows` of the users studied, as dicts; a missing number is None). ``source_label``
    names the source in the store when its path means nothing later (e.g. a temporary folder).

    A run is resumed only for the same settings *and* the same mail (:func:`source_fingerprint`): a
    different maildir whose users have the same names starts its own run instead of mixing in.

    Users are tasks on ``executor`` (:mod:`ssviz.executor`: local or Ray), else in ``workers`` local
    processes, else (``workers`` 1, or one user to run) in this process; this process is the only writer
    of the store. A stop ends the run between users (or inside one): finished users stay stored."""
    settings = (settings or StudySettings()).validate()
    if workers < 1:
        raise SsvizError("workers must be >= 1")
    if min_secrets < 1:
        raise SsvizError("min-secrets must be >= 1")
    log = log or (lambda msg: None)
    cache_dir = Path(cache_dir or DEFAULT_CACHE)
    store = Store(db).prepare()  # a foreign or unwritable --db fails before ingestion and training
    with private_dir("enron") as work:  # raw mail: 0700, removed on exit, error, SIGTERM or the next start
        corpora = build_corpora(source, work, users=users, stop=stop, log=log)
        missing = sorted(set(users or ()) - set(corpora))
        if missing:
            raise SsvizError(f"no sent mail for user(s) {summarize(shown(u) for u in missing)} in "
                             f"{shown(str(source), 200)}")
        jobs = user_jobs(corpora, settings, cache_dir, min_secrets, log)
        values = {j["user"]: [s["value"] for s in j["secrets"]] for j in jobs}
        hashes = {user: text_sha256(corpus.text()) for user, corpus in corpora.items()}
        run_id = store.start_run(settings.to_json(), source=source_label or str(source),
                                 source_id=source_fingerprint(hashes))
        done = store.stored_corpora(run_id)
        todo = [j for j in jobs if done.get(j["user"]) != hashes[j["user"]]]
        log(f"run {run_id}: {len(jobs)} user(s) with secrets, {len(jobs) - len(todo)} already stored")
        finished = len(jobs) - len(todo)
        if progress:
            progress(finished, len(jobs))

        def save(result: UserResult) -> None:
            nonlocal finished
            store.save_user(run_id, result)
            finished += 1
            log(f"{shown(result.user)}: stored {len(result.secrets)} secret(s) in {result.seconds:.1f} s"
                + (" (cached model)" if result.cached_model else ""))
            for note in result.notes:
                log(f"{shown(result.user)}: {note}")
            if progress:
                progress(finished, len(jobs))

        def skip(user: str, error: SsvizError) -> None:
            log(f"{shown(user)}: skipped: {redact(str(error), values.get(user, ()))}")

        with contextlib.ExitStack() as owned:
            if executor is None:
                executor = owned.enter_context(LocalExecutor(workers) if workers > 1 and len(todo) > 1
                                               else InlineExecutor())
            _run_on(executor, todo, save, skip, stop)
        if {j["user"] for j in jobs} <= store.done_users(run_id):
            store.finish_run(run_id)
        studied = {j["user"] for j in jobs}
    return [asdict(r) for r in store.rows(run_id) if r.user in studied]


def _run_on(executor, jobs: list[dict], save, skip, stop) -> None:
    """Every user as a task on ``executor``, one CPU each; results are stored here, as each arrives.

    A user that fails (e.g. a corpus too short to train on) is skipped: the other users still run."""
    tasks = [{"job": job, "corpus": executor.share_file(job["corpus_path"])} for job in jobs]
    report = executor.map(user_task, tasks, on_result=lambda i, result: save(result),
                          on_error=lambda failure: skip(jobs[failure.index]["user"], failure.exception()), stop=stop)
    if report.stopped:
        raise StoppedError("stopped: users in progress are lost, finished users are stored")


def result_rows(rows: list[dict]) -> list[dict]:
    """The CLI's JSON rows (``user, type, last4, times_present, exposure, exposure_method, extracted``) of
    :func:`run_study`'s rows."""
    return [ComparisonRow(**r).to_json() for r in rows]
