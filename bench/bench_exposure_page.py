"""The Exposure page's exact-exposure path, timed stage by stage with the library calls the page makes.

    python bench/bench_exposure_page.py            # bundled 2x200 demo, its 6-digit template (10^6 fillers)
    python bench/bench_exposure_page.py --json     # the same as JSON
    python bench/bench_exposure_page.py --cli      # also a whole `python -m ssviz exposure --method exact` process
    python bench/bench_exposure_page.py --browser  # also the real page: streamlit + /usr/bin/chromium, button -> result

From the button to the figures: the measurement (scoring every filler, the rank, the skew-normal fit on
its subsample, the fixed-bin histogram), then what every page run draws from the result: the cost strip
of the secret's characters, the compared fillers' scores and exposures, the histogram figure and the
comparison bars (built and serialized as ``st.plotly_chart`` does). Each stage is the best of
``--repeat`` runs (the machine may be shared); ``first_*`` are the first run's times (a cold process).
Model loading is timed once (the app caches the model per process).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

# another checkout, to time a before/after: its CLI and app run from there (the library part: PYTHONPATH=that checkout)
ROOT = Path(os.environ.get("SSVIZ_BENCH_ROOT") or Path(__file__).resolve().parents[1])


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def page_run(model, template, secret: str, others: list[str]) -> dict:
    """One press of **Measure exposure** (method auto, exact for 10^6 fillers) and the page run that draws the
    result: stage -> seconds."""
    from ssviz import exposure
    from ssviz.plots.exposure import exposure_bars, exposure_histogram
    from ssviz.plots.tokens import cost_strip, secret_units
    from ssviz.report import char_costs
    from ssviz.scoring import score_fillers

    t = {}
    res, t["measure"] = timed(lambda: exposure.measure(model, template, secret, "auto", samples=10_000, seed=0,
                                                       progress=lambda done, total: None, stop=lambda: False))
    text = template.format(secret)

    def strip():
        units = char_costs(model, text)
        marks = secret_units([u for u, _ in units], text, template)
        return cost_strip(units, marks, unit="character", title=text).to_json()
    _, t["cost_strip"] = timed(strip)
    fillers = list(dict.fromkeys([secret, *others]))

    def rows():
        lps = score_fillers(model, template, fillers)
        return lps, exposure.exposure_of(res, lps)
    (lps, measured), t["compared_fillers"] = timed(rows)
    secrets = dict(zip(fillers, map(float, lps)))

    import inspect
    fixed_bins = {"histogram": res.histogram} if "histogram" in inspect.signature(exposure_histogram).parameters else {}

    def histogram():  # (the page before fixed bins re-binned every score)
        fig = exposure_histogram(res.reference_lps, secrets, res.skewnorm, **fixed_bins,
                                 title=f"{len(res.reference_lps):,} fillers of “{template.text}”")
        return fig.to_json()
    _, t["histogram_figure"] = timed(histogram)
    bar_rows = [{"label": f, "exposure": m["exposure"]} for f, m in zip(fillers, measured)]
    _, t["comparison_figure"] = timed(lambda: exposure_bars(bar_rows, math.log2(template.space_size)).to_json())
    t["redraw"] = sum(v for k, v in t.items() if k != "measure")
    t["total"] = t["measure"] + t["redraw"]
    return t


def measure_stages(model, template, secret, repeat: int = 5) -> dict:
    """Scoring, fit and histogram inside the measurement, separately (best of ``repeat``)."""
    from ssviz import exposure
    from ssviz.scoring import score_space
    best: dict[str, float] = {}
    for _ in range(repeat):
        lps, s = timed(lambda: score_space(model, template))
        got = {"score_space": s}
        _, got["rank"] = timed(lambda: int((lps <= lps[template.index_of(secret)]).sum()))
        _, got["skewnorm_fit_on_subsample"] = timed(lambda: exposure.fit_subsample(lps))
        _, got["fixed_bin_histogram"] = timed(lambda: exposure.Histogram.of(lps).to_json())
        for k, v in got.items():
            best[k] = min(best.get(k, math.inf), v)
    return best


def cli_process(template: str, secret: str, repeat: int) -> dict:
    """A whole ``python -m ssviz exposure --method exact --json`` process, and ``--help`` (start-up)."""
    from ssviz.demo import DEMO_CHECKPOINT
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "ssviz", "exposure", "--checkpoint", str(DEMO_CHECKPOINT), "--template", template,
           "--secret", secret, "--method", "exact", "--json"]
    out = {}
    for name, argv in (("cli_exposure_seconds", cmd), ("cli_help_seconds", [sys.executable, "-m", "ssviz", "--help"])):
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True, env=env, cwd=ROOT)
            runs.append(time.perf_counter() - t0)
        out[name] = min(runs)
    return out


def browser_runs(repeat: int, port: int) -> dict:
    """The real page: ``streamlit run app.py`` (headless, 127.0.0.1:``port``) driven by /usr/bin/chromium through
    Playwright. Each run is a fresh session (its results cache is empty; the model is cached by the server
    process after the first): open the Exposure page, click **Measure exposure**, time until the rank and
    the histogram are drawn. The server is stopped afterwards."""
    from playwright.sync_api import expect, sync_playwright

    from app_server import local_app  # beside this script
    runs = []
    with local_app(port, root=ROOT, env={"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")},
                   timeout=90) as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            for _ in range(repeat):
                context = browser.new_context(viewport={"width": 1440, "height": 2400})
                page = context.new_page()
                page.goto(f"{url}/exposure")
                button = page.get_by_role("button", name="Measure exposure")
                expect(button).to_be_enabled(timeout=120_000)
                page.wait_for_timeout(500)  # the first page run has finished drawing
                t0 = time.perf_counter()
                button.click()
                expect(page.get_by_text("ranks 1 of 1,000,000", exact=False).first).to_be_visible(timeout=180_000)
                expect(page.get_by_text("Where the secret falls")).to_be_visible(timeout=60_000)
                expect(page.locator('[data-testid="stPlotlyChart"]').nth(2)).to_be_visible(timeout=60_000)
                runs.append(time.perf_counter() - t0)
                context.close()
            browser.close()
    return {"browser_button_to_result_seconds": min(runs), "browser_runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON only")
    ap.add_argument("--repeat", type=int, default=3, help="runs per stage; the best is kept (default 3)")
    ap.add_argument("--cli", action="store_true", help="also time whole CLI processes")
    ap.add_argument("--browser", action="store_true", help="also time the real page in Chromium")
    ap.add_argument("--port", type=int, default=8571, help="streamlit's port for --browser")
    args = ap.parse_args()

    t0 = time.perf_counter()
    import torch

    from ssviz.demo import DEMO_CANARY, DEMO_CHECKPOINT, DEMO_CONTROL
    from ssviz.models import load_model
    from ssviz.templates import Template
    imports = time.perf_counter() - t0
    model, load = timed(lambda: load_model(str(DEMO_CHECKPOINT)))
    template, secret = Template(DEMO_CANARY["template"]), DEMO_CANARY["secret"]
    runs = [page_run(model, template, secret, [DEMO_CONTROL]) for _ in range(max(1, args.repeat))]
    best = {k: min(r[k] for r in runs) for k in runs[0]}
    import ssviz
    report = {"ssviz": str(Path(ssviz.__file__).parent), "model": str(DEMO_CHECKPOINT.name), "template": template.text, "fillers": template.space_size,
              "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "repeat": args.repeat,
              "load_average_1min": os.getloadavg()[0], "imports_seconds": imports, "model_load_seconds": load,
              "page": best, "first_page_run": runs[0],
              "inside_measure": measure_stages(model, template, secret, args.repeat)}
    if args.cli:
        report.update(cli_process(template.text, secret, args.repeat))
    if args.browser:
        report.update(browser_runs(args.repeat, args.port))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{template.space_size:,} fillers of {template.text!r}, {report['torch_threads']} torch threads, "
          f"best of {args.repeat} (load average {report['load_average_1min']:.1f})")
    for k, v in best.items():
        print(f"  {k:<20} {v:7.3f} s")
    for k, v in report["inside_measure"].items():
        print(f"    measure: {k:<26} {v:7.3f} s")
    for k in ("cli_exposure_seconds", "cli_help_seconds", "browser_button_to_result_seconds"):
        if k in report:
            print(f"  {k:<20} {report[k]:7.3f} s")


if __name__ == "__main__":
    main()
