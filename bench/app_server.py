"""Start the app (app.py of this checkout) on 127.0.0.1 for a browser test or benchmark, and stop it afterwards.

Tooling, not library: it lives beside the benchmarks, which import it as ``app_server`` (a script's own
folder is on its path), while tests, run from the checkout, import it as ``bench.app_server``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request

from ssviz.paths import SOURCE_ROOT as ROOT


@contextlib.contextmanager
def local_app(port: int, *, root=ROOT, env: dict | None = None, log=subprocess.DEVNULL, timeout: float = 60.0):
    """``with local_app(8599) as url:`` the app served on loopback until the block ends (then terminated).

    ``root``: the checkout whose ``app.py`` is served (another one, to time a before/after)."""
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
                             "--server.port", str(port), "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], cwd=root, env={**os.environ, **(env or {})},
                            stdout=log, stderr=subprocess.STDOUT if log is not subprocess.DEVNULL else log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start (exit code {proc.poll()})")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
