"""What a report says about each secret, as plain data: measured here or handed over by the app.

A finding is one secret's exposure (with its estimator's details), its
extraction result and the per-character cost of its text. The verdict turns the
numbers into one of three words for people who are not specialists, and keeps
the number behind each word.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from ssviz.exposure import ExposureResult
from ssviz.extraction.result import ExtractionResult
from ssviz.models.base import LanguageModel
from ssviz.scoring import unit_costs
from ssviz.templates import Template

# A random filler reaches exposure E with probability 2^-E, so E >= log2(20) happens by chance
# less than 5% of the time: below it a secret is indistinguishable from chance.
EXPOSED_BITS = math.log2(20)


@dataclass
class ModelSummary:
    name: str
    description: dict
    parameters: int
    sha256: str | None = None
    training: dict | None = None     # the checkpoint's recorded training (config, canary, epochs)


@dataclass
class Finding:
    secret: str                       # raw: rendered redacted unless the report reveals secrets
    template: str
    exposure: ExposureResult
    extraction: ExtractionResult | None = None
    char_bits: list[tuple[str, float | None]] = field(default_factory=list)  # every unit; the first is context
    unit: str = "character"          # what char_bits lists: "character", or "token" for a transformer

    @property
    def extracted(self) -> bool:
        """The search certified the secret as the model's most likely filler."""
        x = self.extraction
        return bool(x is not None and x.complete and x.found == self.secret)

    @property
    def verdict(self) -> str:
        if self.extracted:
            return "extractable"
        return "exposed" if self.exposure.exposure >= EXPOSED_BITS else "indistinguishable from chance"

    @property
    def chance_probability(self) -> float:
        """How often a random filler of the template is at least this exposed."""
        return 2.0 ** -max(self.exposure.exposure, 0.0)


def content_sha256(path) -> str | None:
    """SHA-256 of a model file, or of a model folder: every file's relative name and bytes, in name order
    (the same folder gives the same hash wherever it is copied). None for anything else."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_file():
        files = [(None, path)]
    elif path.is_dir():
        files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file()
                       and not p.is_symlink())
    else:
        return None
    for name, file in files:
        if name is not None:
            h.update(name.encode("utf-8") + b"\0" + str(file.stat().st_size).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def model_summary(model: LanguageModel, path=None, name: str | None = None) -> ModelSummary:
    params = model.parameter_count
    sha = content_sha256(path) if path is not None else None
    extra = getattr(model, "extra_config", None) or {}
    return ModelSummary(name=name or (Path(path).name if path else type(model).__name__),
                        description=dict(model.description), parameters=int(params), sha256=sha,
                        training=extra.get("training"))


def char_costs(model: LanguageModel, text: str) -> list[tuple[str, float | None]]:
    """``(unit, bits)`` for every unit of ``text`` (characters or tokens), the first with bits None (it is
    context): where along the text the model 'knows' it."""
    return [(t, b) for _, t, b in unit_costs(model, text)]


def measure(model: LanguageModel, template: Template, secrets: list[str], *, method: str = "auto",
            samples: int = 10_000, seed: int = 0, max_nodes: int = 100_000, batch_size: int = 64,
            exposures: dict | None = None, extraction: ExtractionResult | None = None,
            progress=None, stop=None) -> list[Finding]:
    """Exposure, a shortest-path extraction (once per template) and per-character costs of each secret.

    Results someone already has (the app's pages) are passed in and not measured again:
    ``exposures`` maps a secret to its :class:`ExposureResult`, ``extraction`` is the search's result.
    """
    from ssviz import exposure
    from ssviz.extraction import shortest_path

    secrets = [template.normalize(s) for s in secrets]
    exposures = exposures or {}
    if extraction is None:
        extraction = shortest_path(model, template, top_k=5, max_nodes=max_nodes, batch_size=batch_size,
                                   stop=stop)
    findings = []
    for secret in secrets:
        res = exposures.get(secret) or exposure.measure(model, template, secret, method, samples=samples, seed=seed,
                                                         progress=progress, stop=stop)
        findings.append(Finding(secret, template.text, res, extraction, char_costs(model, template.format(secret)),
                                model.unit_name))
    return findings
