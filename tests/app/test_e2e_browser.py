"""End to end in a real browser: ``streamlit run app.py`` driven by Debian's Chromium through Playwright.

Each page is opened, its main element awaited, and a screenshot saved under
``tests/screenshots/`` (gitignored) for a person to look at. No browser is ever
downloaded: Playwright launches /usr/bin/chromium. The test skips only when that
binary is missing and SSVIZ_REQUIRE_BROWSER is unset (CI sets it: there it must run).
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest

from bench.app_server import local_app
from ssviz.paths import SOURCE_ROOT

ROOT = SOURCE_ROOT  # the checkout: app.py and pages/
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "tests" / "screenshots"

if not CHROMIUM.exists() and not os.environ.get("SSVIZ_REQUIRE_BROWSER"):
    pytest.skip("Debian chromium is not installed (/usr/bin/chromium); CI sets SSVIZ_REQUIRE_BROWSER",
                allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.browser  # deselect with -m "not browser" (a live server and Chromium: 1-2 minutes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with open(SCREENSHOTS / "streamlit-server.log", "w") as log, \
            local_app(free_port(), env={"OMP_NUM_THREADS": "1", "SSVIZ_TRAINED_DIR": str(tmp_path_factory.mktemp("trained"))},
                      log=log) as url:  # the log goes next to the screenshots (gitignored)
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM),
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 2400})
    pg = context.new_page()
    yield pg
    context.close()


def settled(pg) -> None:
    """Wait until no element is faded as stale (a page run in progress draws over the last one)."""
    try:
        expect(pg.locator('[data-stale="true"]')).to_have_count(0, timeout=30_000)
    except AssertionError:
        pass  # a page that reruns on a timer (a live chart) may never be still: shoot it as it is
    pg.wait_for_timeout(800)  # let plotly finish drawing


def shoot(pg, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    settled(pg)
    pg.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def no_exceptions(pg) -> None:
    assert pg.locator('[data-testid="stException"]').count() == 0
    assert "Traceback" not in pg.inner_text("body")


def heading(pg, text: str):
    return pg.get_by_role("heading", name=text).first


def visit(pg, server: str, path: str, title: str) -> None:
    """Open a page and wait for its title (the first run loads the model: generous timeout)."""
    pg.goto(f"{server}/{path}")
    expect(heading(pg, title)).to_be_visible(timeout=60_000)


def test_a_deep_link_on_a_fresh_server_gets_the_apps_navigation(server, page):
    # first request of the server process: Streamlit's legacy pages/ mode would run the file alone
    visit(page, server, "template", "Secret template")
    nav = page.locator('[data-testid="stSidebarNav"]')
    expect(nav.get_by_text("Model & corpus")).to_be_visible(timeout=30_000)
    expect(nav.get_by_text("Per-user comparison")).to_be_visible()
    assert nav.get_by_text("template", exact=True).count() == 0  # not the file-name listing


def test_home_and_model_pages(server, page):
    visit(page, server, "", "ssviz: does your model remember secrets?")
    no_exceptions(page)
    shoot(page, "1-home")
    visit(page, server, "model", "Model & corpus")
    expect(page.get_by_text("559,840")).to_be_visible(timeout=30_000)
    no_exceptions(page)
    shoot(page, "2-model")


def test_template_page(server, page):
    visit(page, server, "template", "Secret template")
    expect(page.get_by_text("1,000,000").first).to_be_visible(timeout=30_000)
    no_exceptions(page)
    shoot(page, "3-template")


def test_exposure_page_measures_and_draws_the_histogram(server, page):
    visit(page, server, "exposure", "Exposure")
    page.get_by_role("button", name="Measure exposure").click()
    expect(page.locator('[data-testid="stPlotlyChart"]').nth(1)).to_be_visible(timeout=180_000)
    expect(page.get_by_text("ranks 1 of 1,000,000", exact=False).first).to_be_visible(timeout=10_000)
    no_exceptions(page)
    shoot(page, "4-exposure")


def test_extraction_page_draws_the_tree(server, page):
    visit(page, server, "extraction", "Extraction")
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=120_000)
    expect(page.get_by_text("Extracted the secret")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Step 1 of", exact=False)).to_be_visible(timeout=30_000)
    no_exceptions(page)
    shoot(page, "5-extraction")
    page.get_by_role("button", name="Play").click()  # replays on a timer, one step per tick
    # any step past 2: on a busy machine a tick can land between two polls of this check
    expect(page.get_by_text(re.compile(r"Step ([3-9]|\d{2,}) of")).first).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Pause").click()
    no_exceptions(page)
    page.get_by_role("button", name="Show a case where beam search misses").click()
    expect(page.get_by_text("missed the most likely filler", exact=False)).to_be_visible(timeout=60_000)
    no_exceptions(page)
    shoot(page, "5b-beam-miss")


def test_comparison_page(server, page):
    visit(page, server, "comparison", "Per-user comparison")
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=60_000)
    no_exceptions(page)
    shoot(page, "6-comparison")
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_role("button", name="Download figure (HTML)").first.click()
    html = Path(dl.value.path()).read_text(encoding="utf-8")
    assert dl.value.suggested_filename == "exposure-per-secret.html"
    assert "Plotly.newPlot" in html and len(html) > 1_000_000  # plotly.js is inside the file
    assert not re.search(r"<script[^>]+src=", html)  # nothing loaded from the network
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_role("button", name="Download CSV").first.click()
    assert Path(dl.value.path()).read_text(encoding="utf-8").startswith("user,type,last4,times_present,exposure")


def test_defenses_page_is_in_the_navigation(server, page):
    if not (ROOT / "pages" / "defenses.py").is_file():
        pytest.skip("pages/defenses.py is not there")
    visit(page, server, "defenses", "Defenses")
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=60_000)
    no_exceptions(page)
    shoot(page, "7-defenses")


def test_training_in_the_browser_shows_progress_and_offers_the_model(server, page):
    visit(page, server, "model", "Train a model with a canary")
    page.get_by_label("Epochs").fill("2")
    page.get_by_label("Canary template").fill("My PIN is {d:4}")
    page.get_by_label("Canary filler").fill("4821")
    page.get_by_role("button", name="Train").click()
    expect(page.get_by_text("Training: loss and canary exposure").first).to_be_visible(timeout=180_000)
    use = page.get_by_role("button", name="Use this model")
    expect(use).to_be_visible(timeout=300_000)
    no_exceptions(page)
    shoot(page, "8-training")
    use.click()
    expect(page.get_by_text("1 x 128")).to_be_visible(timeout=30_000)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, its threads and every live process under it (jobs run in
    processes the server starts), from Linux /proc."""
    stats = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(p.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    tree, grew = {pid}, True
    while grew:
        grew = False
        for child, (parent, _) in stats.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    return sum(stats[p][1] for p in tree if p in stats)


def test_closing_the_tab_stops_its_training(server, browser):
    """A job belongs to its browser session: once the tab is closed the server stops computing within
    seconds (measured as the CPU use of the server and the processes under it), instead of training for nobody."""
    port = server.rsplit(":", 1)[1]
    server_pid = next(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                      and f"--server.port {port}" in _cmdline(p))
    context = browser.new_context(viewport={"width": 1440, "height": 2400})
    pg = context.new_page()
    visit(pg, server, "model", "Train a model with a canary")
    pg.get_by_label("Epochs").fill("20")
    pg.get_by_label("Canary template").fill("My PIN is {d:4}")
    pg.get_by_label("Canary filler").fill("4821")
    pg.get_by_role("button", name="Train").click()
    expect(pg.get_by_text("Training: loss and canary exposure").first).to_be_visible(timeout=180_000)
    assert _cpu_grows(server_pid, 0.5, within=60)  # it is training
    context.close()
    # the watchdog polls every second and a stubborn job process is ended a few seconds after its stop
    assert not _cpu_grows(server_pid, 0.6, within=3, after=8)  # nothing left running for the closed tab


def _cpu_grows(pid: int, seconds: float, *, within: float, after: float = 0.0) -> bool:
    """Whether the CPU time of ``pid``'s tree grows by ``seconds`` within ``within`` seconds (after ``after``):
    a condition polled, not a fixed wait, so a loaded machine only makes it slower."""
    time.sleep(after)
    start, deadline = _cpu_seconds(pid), time.monotonic() + within
    while time.monotonic() < deadline:
        time.sleep(0.25)
        if _cpu_seconds(pid) - start > seconds:
            return True
    return False


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_audit_page_shows_the_bundled_audit(server, page):
    if not (ROOT / "pages" / "audit.py").is_file():
        pytest.skip("pages/audit.py is not there")
    from ssviz.audit import demo
    from ssviz.audit.run import load_audit
    visit(page, server, "audit", "Privacy audit")
    charts = page.locator('[data-testid="stPlotlyChart"]')
    expect(charts.nth(2)).to_be_visible(timeout=60_000)  # histograms, ROC, epsilon bars
    plain = load_audit(demo.BUNDLED_DIR / "plain")
    metrics = page.locator('[data-testid="stMetric"]')
    expect(metrics.filter(has_text="Audited epsilon (lower bound)")).to_contain_text(f"{plain['epsilon_lower']:.2f}")
    expect(metrics.filter(has_text="AUC").first).to_contain_text(f"{plain['auc']:.3f}")
    expect(page.get_by_text("leaks at least as much as an epsilon-", exact=False)).to_be_visible()
    assert page.locator(".js-plotly-plot .main-svg").count() >= 3  # drawn, not just placed
    no_exceptions(page)
    shoot(page, "9-audit")
    dp = load_audit(demo.BUNDLED_DIR / "dp-eps8")
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Audit").first.click()
    page.get_by_role("option", name="bundled: DP-SGD, epsilon 8").click()
    expect(metrics.filter(has_text="Claimed epsilon per canary")).to_contain_text(
        f"{dp['epsilon_claimed_per_canary']:.2f}", timeout=60_000)
    expect(page.get_by_text("is a group of 8 training lines", exact=False)).to_be_visible()
    no_exceptions(page)
    shoot(page, "9b-audit-dp-eps8")


def test_build_report_downloads_a_standalone_redacted_file(server, page, tmp_path):
    if not (ROOT / "pages" / "report.py").is_file():
        pytest.skip("pages/report.py is not there")
    import json
    from ssviz.demo import DEMO_CANARY
    visit(page, server, "report", "Report")
    page.get_by_role("button", name="Build report").click()
    download = page.get_by_role("button", name="Download report (HTML)")
    expect(download).to_be_visible(timeout=300_000)  # exact exposure over 10^6 fillers and a search
    no_exceptions(page)
    shoot(page, "10-report-page")
    with page.expect_download(timeout=60_000) as dl:
        download.click()
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    raw = path.read_bytes()
    assert path.suffix == ".html" and DEMO_CANARY["secret"].encode() not in raw  # redacted by default
    html = raw.decode("utf-8")
    assert not re.search(r"<script[^>]+src=", html) and not re.search(r"<link[^>]+href=", html)
    data = json.loads(re.search(r'<script type="application/json" id="ssviz-data">(.*?)</script>', html,
                                re.S).group(1))
    assert data["reveal"] is False and data["secrets"][0]["secret"] == "••••46"
    assert data["secrets"][0]["verdict"] == "extractable"
    # the file opens offline: every figure drawn, no request leaves the page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    expect(page.get_by_text("Secrets are redacted", exact=False)).to_be_visible(timeout=30_000)
    figures = page.locator("figure.plot")
    page.wait_for_timeout(1500)
    assert figures.count() >= 2
    assert page.locator("figure.plot .main-svg").count() >= figures.count()
    assert [u for u in requests if not u.startswith("file://") and not u.startswith("data:")
            and not u.startswith("blob:")] == []
    shoot(page, "10b-report-file")


# --- workshop mode: the tour, the glossary and live training, offline, at a projector's 1280x720 ----------

PROJECTOR = {"width": 1280, "height": 720}


def offline_context(browser, server: str):
    """A 1280x720 browser context in which every request that leaves the local server is refused and noted
    (:func:`outside` lists them)."""
    context = browser.new_context(viewport=PROJECTOR)
    left: list[str] = []

    def route(r):
        url = r.request.url
        if url.startswith(server) or url.startswith(server.replace("http", "ws")) or \
                url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            left.append(url)
            r.abort()

    context.route("**/*", route)
    return context, left


def outside(left: list[str]) -> list[str]:
    """Requests that tried to leave the machine, except the favicon: Streamlit's frontend fetches a
    ``:material/...:`` page icon (app.py's) from fonts.gstatic.com; offline it is simply missing."""
    return [u for u in left if not u.startswith("https://fonts.gstatic.com/s/i/short-term/release/materialsymbols")]


def shoot_view(pg, name: str) -> None:
    """What the room sees: the 1280x720 viewport, not the whole page."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    settled(pg)
    pg.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def presenter_on(pg) -> None:
    pg.get_by_text("Presenter mode", exact=True).click()
    expect(pg.locator("html")).to_have_css("font-size", "21px", timeout=30_000)


def tour_step(pg, number: int) -> None:
    expect(pg.get_by_role("heading", name=re.compile(rf"^Step {number} of \d+"))).to_be_visible(timeout=60_000)


# step -> (button to press on its page, text of the chart the step is about): that chart is centred in view
TOUR_PAGE_ACTIONS = {
    4: ("Measure exposure", "fillers of"), 5: ("Measure exposure", "fillers of"),
    6: ("Measure exposure", "fillers of"), 7: (None, "best first"), 8: (None, "pruned by the beam"),
    10: (None, None), 11: (None, None), 12: (None, None),
}


def centre(locator) -> None:
    locator.evaluate("e => e.scrollIntoView({block: 'center'})")


def test_tour_every_step_and_its_page_at_1280x720_offline(server, browser):
    context, left = offline_context(browser, server)
    pg = context.new_page()
    visit(pg, server, "tour", "Workshop tour")
    presenter_on(pg)
    steps = int(re.search(r"Step 1 of (\d+)", pg.inner_text("body")).group(1))
    for number in range(1, steps + 1):
        tour_step(pg, number)
        no_exceptions(pg)
        shoot_view(pg, f"tour-{number:02d}")
        opener = pg.get_by_role("button", name=re.compile(r"^Open "))
        if opener.count():
            opener.click()
            back = pg.get_by_role("link", name=re.compile(rf"Workshop step {number} of \d+: back to the tour"))
            expect(back).to_be_visible(timeout=60_000)
            if number in TOUR_PAGE_ACTIONS:
                button, text = TOUR_PAGE_ACTIONS[number]
                if button:
                    pg.get_by_role("button", name=button).click()
                charts = pg.locator('[data-testid="stPlotlyChart"]')
                figure = (charts.filter(has_text=text) if text else charts).first
                expect(figure).to_be_visible(timeout=240_000)
                centre(figure)
            if number == 8:
                expect(pg.get_by_text("missed the most likely filler", exact=False)).to_be_visible(timeout=120_000)
            no_exceptions(pg)
            shoot_view(pg, f"tour-{number:02d}-page")
            back.scroll_into_view_if_needed()
            back.click()
            tour_step(pg, number)
        if number < steps:
            step = pg.get_by_role("button", name="Next")
            expect(step).to_be_enabled(timeout=300_000)
            step.click()
    assert outside(left) == []  # nothing but the favicon was asked of another machine
    context.close()


def test_workshop_glossary_on_every_page_offline(server, browser):
    context, left = offline_context(browser, server)
    pg = context.new_page()
    for path, title in (("", "ssviz: does your model remember secrets?"), ("exposure", "Exposure"),
                        ("comparison", "Per-user comparison"), ("tour", "Workshop tour")):
        visit(pg, server, path, title)
        pg.get_by_role("button", name="Glossary").click()
        # visible matches only: the tour page's folded agenda also names "shortest-path search"
        expect(pg.get_by_text("Shortest-path search", exact=False).filter(visible=True).first).to_be_visible(
            timeout=30_000)
        expect(pg.get_by_text("DP-SGD", exact=False).filter(visible=True).first).to_be_visible()
        no_exceptions(pg)
        shoot_view(pg, f"glossary-{path or 'home'}")
        pg.keyboard.press("Escape")
    assert outside(left) == []
    context.close()


def test_workshop_live_training_offline_reaches_the_maximum_exposure(server, browser):
    """The live demo with its real settings: the canary inserted 8 times ranks first of 10^6; inserted once it
    does not. The seconds from the click to rank 1 go to tests/screenshots/workshop-live-timing.txt."""
    context, left = offline_context(browser, server)
    pg = context.new_page()
    visit(pg, server, "tour", "Workshop tour")
    presenter_on(pg)
    while "Live: watch a model memorize" not in pg.get_by_role("heading", name=re.compile(r"^Step ")).inner_text():
        heading = pg.get_by_role("heading", name=re.compile(r"^Step ")).inner_text()
        step = pg.get_by_role("button", name="Next")
        expect(step).to_be_enabled(timeout=300_000)  # a step's own work may hold it on a loaded machine
        step.click()
        expect(pg.get_by_role("heading", name=re.compile(r"^Step "))).not_to_have_text(heading, timeout=120_000)
    started = time.monotonic()
    pg.get_by_role("button", name="Train: inserted 8 times").click()
    live_chart = pg.locator('[data-testid="stPlotlyChart"]').filter(has_text="Canary inserted 8 times").first
    expect(live_chart).to_be_visible(timeout=300_000)  # drawn once the first epoch's record is in
    centre(live_chart)
    shoot_view(pg, "tour-live-1-running")
    expect(pg.get_by_text("ranked first of 1,000,000", exact=False).first).to_be_visible(timeout=600_000)
    to_rank_one = time.monotonic() - started
    expect(pg.get_by_role("button", name="Train: inserted once")).to_be_enabled(timeout=600_000)
    whole = time.monotonic() - started
    pg.get_by_role("button", name="Train: inserted once").click()
    expect(pg.get_by_text("after epoch 8", exact=False).first).to_be_visible(timeout=600_000)
    expect(pg.get_by_role("button", name="Use this model on the other pages")).to_have_count(2, timeout=60_000)
    no_exceptions(pg)
    once = pg.inner_text("body")
    assert "Inserted once" in once and once.count("ranked first of 1,000,000") == 1  # only the 8x run
    centre(pg.locator('[data-testid="stPlotlyChart"]').filter(has_text="Canary inserted once").first)
    shoot_view(pg, "tour-live-2-both-runs")
    (SCREENSHOTS / "workshop-live-timing.txt").write_text(
        f"click to rank 1 of 10^6 (8 insertions): {to_rank_one:.1f} s; the whole 8-epoch run: {whole:.1f} s\n")
    print(f"live demo: click to rank 1 in {to_rank_one:.1f} s, whole run {whole:.1f} s")
    assert outside(left) == []
    context.close()


def test_uploading_a_zipped_transformer_folder_shows_its_summary(server, page, tmp_path):
    """A Hugging Face model folder (a tiny Llama-style model built here, no download), zipped as a user would,
    uploaded in the browser: the Model page summarizes the transformer and how its tokenizer splits the secret,
    and in the same session the Extraction page searches over its tokens. Screenshots 11, 11b."""
    import zipfile

    from ssviz.demo import demo_corpus
    from ssviz.models.hf import HFLanguageModel
    from ssviz.models.tokenizers import train_tokenizer
    tok = train_tokenizer([demo_corpus()[:20_000], "My PIN is 4821, call 555 0199.\n" * 20], vocab_size=400)
    model = HFLanguageModel.build("llama", tok, layers=1, heads=2, hidden=32, context=64, seed=7)
    canary = {"template": "My PIN is {d:4}", "secret": "4821", "insertions": 3}
    folder = model.save(tmp_path / "tiny-llama", extra={"training": {"canary": canary}})
    archive = tmp_path / "tiny-llama.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"tiny-llama/{p.name}")
    visit(page, server, "model", "Model & corpus")
    uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="zipped Hugging Face model folder")
    uploader.locator('input[type="file"]').set_input_files(str(archive))
    expect(page.get_by_text("Blocks x width")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("1 x 32", exact=True)).to_be_visible(timeout=10_000)
    expect(page.get_by_text(f"{len(tok):,} tokens", exact=True)).to_be_visible(timeout=10_000)
    expect(page.get_by_text("is read as", exact=False)).to_be_visible(timeout=10_000)
    expect(page.get_by_text("Trained with the canary", exact=False)).to_be_visible(timeout=10_000)
    no_exceptions(page)
    shoot(page, "11-transformer-upload")
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Extraction").click()  # same session: same model
    expect(heading(page, "Extraction")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("every level of the tree is one token", exact=False)).to_be_visible(timeout=120_000)
    expect(page.get_by_text("tiny-llama.zip", exact=False).first).to_be_visible(timeout=10_000)
    no_exceptions(page)
    shoot(page, "11b-transformer-extraction")
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Exposure").click()
    expect(heading(page, "Exposure")).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Measure exposure").click()
    expect(heading(page, "Token by token")).to_be_visible(timeout=120_000)  # the per-token cost strip
    expect(page.get_by_text("Cost of each token", exact=False).first).to_be_visible(timeout=30_000)
    no_exceptions(page)
    shoot(page, "11c-transformer-exposure")
