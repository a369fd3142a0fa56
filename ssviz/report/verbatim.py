"""The report's optional verbatim-extraction section, from the summary ``verbatim`` writes (``verbatim.json``).

Only rates and counts appear: no line of the training data is quoted, so the section never shows a
secret those lines may hold.
"""

from __future__ import annotations

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
    return summary


def section(summary: dict) -> str:
    """HTML of the section: rates by duplicate count, the laws' figures, how the lines were chosen."""
    from ssviz.plots.verbatim import extraction_probability, rate_by_duplicates, rate_by_prefix
    from ssviz.report.html import _e, _figure, _num, _table

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    rows = [[g["duplicates"], g["texts"], g["extractable"], f"{pct(g['rate'])} ({pct(g['rate_low'])}–"
             f"{pct(g['rate_high'])})", pct(g["mean_match_fraction"]),
             f"{g['extraction_probability']['1']:.2g}", f"{g['extraction_probability']['1000']:.2g}"]
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
                 f"lines on this model (log-linear fit, R² {_num(law['r2'])}).")
    parts = [f"<p>{text}</p>",
             _table(["copies", "lines", "extractable", "rate (95% interval)", "mean match", "P(1 sample)",
                     "P(1,000 samples)"], rows),
             _figure(rate_by_duplicates(summary), "verbatim-duplicates")]
    if summary.get("by_prefix"):
        parts.append(_figure(rate_by_prefix(summary), "verbatim-prefix"))
    parts.append(_figure(extraction_probability(summary), "verbatim-samples"))
    return '<section id="verbatim"><h2>Verbatim extraction of training lines</h2>' + "".join(parts) + "</section>"
