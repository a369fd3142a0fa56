"""Print a report to PDF with headless Chromium (Debian's ``chromium``), offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ssviz.errors import SsvizError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
# the same switches the browser tests use: no background traffic, no profile left behind
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--no-pdf-header-footer")


def find_browser() -> str | None:
    env = os.environ.get("SSVIZ_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def print_pdf(html_path, pdf_path, timeout: float = 120) -> Path:
    """Print ``html_path`` to ``pdf_path``; a clear error when no Chromium is installed."""
    browser = find_browser()
    if browser is None:
        raise SsvizError("--pdf needs headless Chromium (e.g. apt-get install chromium); the HTML report was "
                         "written and prints from any browser")
    pdf_path = Path(pdf_path).resolve()
    with tempfile.TemporaryDirectory(prefix="ssviz-pdf-") as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={pdf_path}",
               Path(html_path).resolve().as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SsvizError(f"Chromium did not finish printing the PDF within {timeout:.0f} s") from None
    if done.returncode != 0 or not pdf_path.is_file():
        raise SsvizError(f"Chromium could not print the PDF (exit {done.returncode})")
    return pdf_path
