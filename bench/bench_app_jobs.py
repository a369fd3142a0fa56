"""The app's long jobs against the CLI doing the same work, and whether the app keeps serving meanwhile.

    python bench/bench_app_jobs.py            # the checkout's app and CLI, the bundled demo LSTM
    python bench/bench_app_jobs.py --json
    SSVIZ_BENCH_ROOT=/path/to/other/checkout python bench/bench_app_jobs.py   # a before/after

Three jobs, each timed from the button to its result in Chromium (``streamlit run app.py`` on 127.0.0.1,
driven by Playwright) and as a whole ``python -m ssviz`` process with the same settings:

* extraction: shortest path over the SSN template (10^9 fillers), 100,000 nodes, 8 per step, the replay
  trace kept (``extract --trace``), the Extraction page's defaults;
* exact exposure of the demo canary over its 10^6 fillers (the Exposure page's ``auto``);
* exposure by search of the demo's control filler, which is not memorized: the page's 200,000-node
  budget runs out (the CLI's ``--max-nodes 200000``), so both do the whole budget's work.

While the extraction runs, a second browser session opens the Home page: the seconds until its title
shows (the app must keep serving other sessions while a job computes). The ratio app/CLI is the one the
app is held to (at most 1.5).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(os.environ.get("SSVIZ_BENCH_ROOT") or Path(__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
TIMEOUT = 900_000  # ms: a starved job (the reason for this benchmark) may take minutes


def cli_seconds(args: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ssviz", *args, "--json"], capture_output=True, env=ENV, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 2):  # 2: the search's budget ran out, as the page's does
        raise RuntimeError(done.stderr.decode()[-400:])
    return seconds


def cli_runs() -> dict:
    from ssviz.demo import DEMO_CANARY, DEMO_CHECKPOINT, DEMO_CONTROL
    ckpt = str(DEMO_CHECKPOINT)
    with tempfile.TemporaryDirectory() as tmp:
        return {
            "extraction": cli_seconds(["extract", "--checkpoint", ckpt, "--template", "SSN", "--max-nodes", "100000",
                                       "--batch-size", "8", "--top", "10", "--max-memory", "512",
                                       "--trace", str(Path(tmp) / "trace.json")]),
            "exact_exposure": cli_seconds(["exposure", "--checkpoint", ckpt, "--template", DEMO_CANARY["template"],
                                           "--secret", DEMO_CANARY["secret"], "--method", "exact"]),
            "search_exposure": cli_seconds(["exposure", "--checkpoint", ckpt, "--template", DEMO_CANARY["template"],
                                            "--secret", DEMO_CONTROL, "--method", "search", "--max-nodes",
                                            "200000"]),
        }


def app_runs(port: int) -> dict:
    from playwright.sync_api import expect, sync_playwright

    from app_server import local_app  # beside this script
    from ssviz.demo import DEMO_CONTROL
    out = {}
    with local_app(port, root=ROOT, env=ENV, timeout=120) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])

        def session():
            return browser.new_context(viewport={"width": 1440, "height": 2000}).new_page()

        def heading(pg, text):
            return pg.get_by_role("heading", name=text).first

        def go(pg, link, title):
            pg.locator('[data-testid="stSidebarNav"]').get_by_text(link, exact=True).click()
            expect(heading(pg, title)).to_be_visible(timeout=120_000)
            pg.wait_for_timeout(700)  # the page's first run has drawn

        warm = session()  # the server loads the model once; not part of any timing
        warm.goto(f"{url}/exposure")
        expect(warm.get_by_role("button", name="Measure exposure")).to_be_enabled(timeout=120_000)
        warm.context.close()

        pg = session()
        pg.goto(f"{url}/template")
        expect(heading(pg, "Secret template")).to_be_visible(timeout=120_000)
        pg.locator('[data-testid="stSelectbox"]').filter(has_text="Preset").first.click()
        pg.get_by_role("option", name="SSN", exact=True).click()
        pg.wait_for_timeout(700)
        go(pg, "Extraction", "Extraction")
        t0 = time.perf_counter()
        pg.get_by_role("button", name="Search", exact=True).click()
        other = session()  # meanwhile, another session opens a page
        o0 = time.perf_counter()
        other.goto(f"{url}/home")
        expect(heading(other, "ssviz")).to_be_visible(timeout=TIMEOUT)
        out["other_session_page_load_during_job"] = time.perf_counter() - o0
        other.context.close()
        expect(pg.locator('[data-testid="stMetric"]').filter(has_text="Nodes expanded").first).to_be_visible(
            timeout=TIMEOUT)  # the result's metric, not the progress panel's status line
        out["extraction"] = time.perf_counter() - t0
        pg.context.close()

        pg = session()
        pg.goto(f"{url}/exposure")
        button = pg.get_by_role("button", name="Measure exposure")
        expect(button).to_be_enabled(timeout=120_000)
        pg.wait_for_timeout(700)
        t0 = time.perf_counter()
        button.click()
        expect(pg.get_by_text("ranks 1 of 1,000,000", exact=False).first).to_be_visible(timeout=TIMEOUT)
        out["exact_exposure"] = time.perf_counter() - t0

        pg.locator('[data-testid="stSelectbox"]').filter(has_text="Method").first.click()
        pg.get_by_role("option", name="search", exact=False).first.click()
        pg.wait_for_timeout(700)
        go(pg, "Secret template", "Secret template")
        field = pg.get_by_label("Secret (filler or the whole text)")
        field.fill(DEMO_CONTROL)
        field.press("Enter")
        pg.wait_for_timeout(700)
        go(pg, "Exposure", "Exposure")
        t0 = time.perf_counter()
        pg.get_by_role("button", name="Measure exposure").click()
        expect(pg.locator('[data-testid="stAlert"]').filter(has_text="search").first).to_be_visible(timeout=TIMEOUT)
        out["search_exposure"] = time.perf_counter() - t0
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--port", type=int, default=8583)
    args = ap.parse_args()
    report = {"root": str(ROOT), "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
              "cli_seconds": cli_runs(), "app_seconds": app_runs(args.port)}
    report["app_over_cli"] = {k: report["app_seconds"][k] / v for k, v in report["cli_seconds"].items()
                              if k in report["app_seconds"]}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['root']} (load average {report['load_average_1min']:.1f}, {report['cpus']} CPUs)")
    print(f"  {'job':<18}{'CLI s':>9}{'app s':>9}{'app/CLI':>9}")
    for k, cli in report["cli_seconds"].items():
        app = report["app_seconds"].get(k)
        print(f"  {k:<18}{cli:9.1f}{app:9.1f}{app / cli:9.2f}" if app else f"  {k:<18}{cli:9.1f}")
    print(f"  another session's page load while the extraction runs: "
          f"{report['app_seconds']['other_session_page_load_during_job']:.1f} s")


if __name__ == "__main__":
    main()
