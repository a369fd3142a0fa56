"""Recording a search as plain JSON data the app replays step by step (format: docs/trace.md).

A search that does not ask for a trace gets ``recorder = None`` and pays one
``if`` per iteration; a :class:`TraceRecorder` keeps at most ``max_steps`` steps
and ``max_children`` entries per list in a step, and sets ``capped`` when it
drops anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from ssviz.errors import MissingFileError, SettingsError, SsvizError
from ssviz.messages import clip

DEFAULT_MAX_STEPS = 500
DEFAULT_MAX_CHILDREN = 100
STEP_KEYS = ("step", "expanded", "children", "frontier_size", "found")
ALGORITHMS = ("dijkstra", "beam", "sampling", "brute")


class TraceRecorder:
    """Accumulates steps; :meth:`finish` returns the trace dict."""

    def __init__(self, algorithm: str, template: str, prefix_bits: float,
                 max_steps: int = DEFAULT_MAX_STEPS, max_children: int = DEFAULT_MAX_CHILDREN,
                 separator: str | None = None):
        if max_steps < 1 or max_children < 1:
            raise SettingsError("trace caps (max_trace_steps, max_trace_children) must be >= 1")
        self.trace = {"algorithm": algorithm, "template": template, "prefix_bits": float(prefix_bits),
                      "capped": False, "max_steps": int(max_steps), "steps": [], "result": None}
        if separator is not None:  # a search over tokens: nodes are token paths (docs/trace.md)
            self.trace.update(unit="token", separator=separator)
        self.max_steps = max_steps
        self.max_children = max_children

    @property
    def full(self) -> bool:
        """True once no more steps are kept (callers may skip building step details)."""
        return len(self.trace["steps"]) >= self.max_steps

    def _cap(self, items: list) -> list:
        if len(items) > self.max_children:
            self.trace["capped"] = True
            return items[:self.max_children]
        return items

    def step(self, expanded: list[dict], children: list[dict], frontier_size: int, found: list[dict]) -> None:
        if self.full:
            self.trace["capped"] = True
            return
        self.trace["steps"].append({"step": len(self.trace["steps"]), "expanded": self._cap(expanded),
                                    "children": self._cap(children), "frontier_size": int(frontier_size),
                                    "found": self._cap(found)})

    def search_step(self, expanded: list[dict], children: list[dict], frontier_size: int, new_found) -> None:
        """One best-first iteration, its lists by cost; ``new_found``: the (cost, filler) pairs it completed."""
        expanded.sort(key=lambda e: e["cost"])
        children.sort(key=lambda e: e["cost"])
        self.step(expanded, children, frontier_size, [found_entry(f, c) for c, f in sorted(new_found)])

    def finish(self, result) -> dict:
        self.trace["result"] = {"found": result.found, "log_perplexity": result.log_perplexity,
                                "top": result.top}
        return self.trace


def node(filler: str, cost: float) -> dict:
    return {"node": filler, "cost": float(cost)}


def child(filler: str, edge: float, cost: float, kept: bool = True) -> dict:
    return {"node": filler, "parent": filler[:-1], "char": filler[-1], "edge": float(edge),
            "cost": float(cost), "kept": bool(kept)}


def token_child(node_name: str, parent: str, token: str, token_id: int, edge: float, cost: float,
                kept: bool = True) -> dict:
    """A child in a search over tokens: ``char`` repeats the token's text for readers of character traces."""
    return {"node": node_name, "parent": parent, "char": token, "token": token, "token_id": int(token_id),
            "edge": float(edge), "cost": float(cost), "kept": bool(kept)}


def found_entry(filler: str, cost: float) -> dict:
    return {"filler": filler, "log_perplexity": float(cost)}


def recorder_for(options, algorithm: str, lattice) -> TraceRecorder | None:
    """A recorder when ``options.trace`` asks for one (a :class:`~ssviz.extraction.options.SearchOptions`)."""
    if not options.trace:
        return None
    return TraceRecorder(algorithm, lattice.template.text, lattice.prefix_bits, options.max_trace_steps,
                         options.max_trace_children, lattice.separator)


def validate_trace(data) -> dict:
    """Check a trace's shape (as loaded from JSON); raise SsvizError naming the first problem."""
    if not isinstance(data, dict):
        raise SsvizError("a trace must be a JSON object")
    for key in ("algorithm", "template", "prefix_bits", "capped", "max_steps", "steps", "result"):
        if key not in data:
            raise SsvizError(f"trace is missing key {key!r}")
    if data["algorithm"] not in ALGORITHMS:
        raise SsvizError(f"trace has unknown algorithm {data['algorithm']!r}")
    if not isinstance(data["steps"], list):
        raise SsvizError("trace 'steps' must be a list")
    for i, st in enumerate(data["steps"]):
        if not isinstance(st, dict) or any(k not in st for k in STEP_KEYS):
            raise SsvizError(f"trace step {i} lacks one of {', '.join(STEP_KEYS)}")
    return data


def save_trace(trace: dict, path) -> Path:
    """Written through an exclusive temp file renamed into place: a planted link or a device is never
    written through, and an interrupted save leaves the old file or none."""
    from ssviz.tempfiles import atomic_write
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(trace))
    return path


def load_trace(source) -> dict:
    """A trace from a path, JSON text or bytes, validated."""
    if isinstance(source, (bytes, bytearray)):
        text = bytes(source).decode("utf-8", errors="replace")
    elif isinstance(source, str) and source.lstrip().startswith("{"):
        text = source
    else:
        path = Path(source)
        if not path.is_file():
            raise MissingFileError(f"trace file not found: {path}")
        text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SsvizError(f"trace is not valid JSON: {clip(str(e), 120)}") from None
    return validate_trace(data)
