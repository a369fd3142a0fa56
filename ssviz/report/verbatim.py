"""The report's optional verbatim-extraction section, from the summary ``verbatim`` writes (``verbatim.json``).

Only rates and counts appear: no line of the training data is quoted, so the section never shows a
secret those lines may hold.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from ssviz.errors import SsvizError

MAX_SUMMARY_BYTES = 16 << 20


def read_summary(path) -> dict:
    """``verbatim.json`` (or a folder holding it) as a dict; one clear line when it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / "verbatim.json"
    try:
        if path.stat().st_size > MAX_SUMMARY_BYTES:
            raise SsvizError(f"{path} is larger than {MAX_SUMMARY_BYTES >> 20} MB: not a verbatim summary")
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SsvizError(f"verbatim summary not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SsvizError(f"{path} is not a verbatim summary ({type(e).__name__})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("by_duplicates"), list):
        raise SsvizError(f"{path} is not a verbatim summary (no by_duplicates)")
    _check(summary, path)
    return summary


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check(summary: dict, path) -> None:
    """Every number the section shows is a number (a file someone else wrote can hold anything)."""
    records = list(summary["by_duplicates"]) + list(summary.get("by_prefix") or [])
    fields = ("texts", "extractable", "rate", "rate_low", "rate_high", "mean_match_fraction")
    for r in records:
        ok = isinstance(r, dict) and all(_number(r.get(k)) or r.get(k) is None for k in fields) and \
            (_number(r.get("duplicates")) or _number(r.get("prefix"))) and \
            isinstance(r.get("extraction_probability"), dict) and \
            all(_number(v) or v is None for v in r["extraction_probability"].values())
        if not ok:
            raise SsvizError(f"{path} is not a verbatim summary (a rate record is malformed)")
    for k in ("tested", "distinct", "short", "prefix", "suffix"):
        if not _number(summary.get(k, 0)):
            raise SsvizError(f"{path} is not a verbatim summary ({k} is not a number)")
    law = summary.get("duplicates_law")
    if law is not None and not (isinstance(law, dict) and _number(law.get("slope")) and _number(law.get("r2"))):
        raise SsvizError(f"{path} is not a verbatim summary (duplicates_law is malformed)")


def _table(header: list[str], rows: list[list]) -> str:
    head = "<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr></thead>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def section(summary: dict, figure) -> str:
    """HTML of the section: rates by duplicate count, the laws' figures, how the lines were chosen.

    ``figure(fig, name)`` embeds a figure as the rest of the report does (``ssviz.report.html`` passes its own)."""
    from ssviz.plots.verbatim import extraction_probability, rate_by_duplicates, rate_by_prefix

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    def g2(x):
        return "n/a" if x is None else f"{x:.2g}"

    rows = [[g["duplicates"], g["texts"], g["extractable"], f"{pct(g['rate'])} ({pct(g['rate_low'])}–"
             f"{pct(g['rate_high'])})", pct(g["mean_match_fraction"]),
             g2(g["extraction_probability"].get("1")), g2(g["extraction_probability"].get("1000"))]
            for g in summary["by_duplicates"]]
    law = summary.get("duplicates_law")
    text = (f"Each of {summary.get('tested', 0):,} distinct training lines (of {summary.get('distinct', 0):,}; "
            f"{summary.get('short', 0):,} shorter than {summary.get('prefix')} + {summary.get('suffix')} units) was "
            f"given its first {summary.get('prefix')} units as a prompt; the model then chose the next "
            f"{summary.get('suffix')} units greedily. A line is <b>extractable</b> when all of them are the line's "
            f"own (Carlini et al. 2022); the match is the fraction that are (Biderman et al. 2023); P(n samples) "
            f"is the chance that n samples from the model contain the line's suffix (Hayes et al. 2024).")
    if law:
        slope = 100 * law["slope"]
        text += (f" Each tenfold increase in copies adds {slope:+.1f} points of extractable "
                 f"lines on this model (log-linear fit, R² {law['r2']:.2f}).")
    parts = [f"<p>{text}</p>",
             _table(["copies", "lines", "extractable", "rate (95% interval)", "mean match", "P(1 sample)",
                     "P(1,000 samples)"], rows),
             figure(rate_by_duplicates(summary), "verbatim-duplicates")]
    if summary.get("by_prefix"):
        parts.append(figure(rate_by_prefix(summary), "verbatim-prefix"))
    parts.append(figure(extraction_probability(summary), "verbatim-samples"))
    return '<section id="verbatim"><h2>Verbatim extraction of training lines</h2>' + "".join(parts) + "</section>"
