"""The Data Docs ctloop builds work without the internet: opened in a real headless Chromium whose every
host lookup fails, the site's results table lists the validation runs (rendered by bootstrap-table, which
the page now loads from its own vendored copy). The same site as GX builds it, with its CDN links, shows
the empty table a machine without internet access saw."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration
DAYS = [date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)]


def _dom(index: Path, profile: Path) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed (make test installs it: apt-get install chromium)")
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",  # no host resolves: offline
         "--virtual-time-budget=15000", "--dump-dom", index.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _rows(dom: str) -> int:
    return len(re.findall(r'<tr[^>]*data-index="\d+"', dom))


def test_the_site_lists_the_runs_offline_and_gx_as_built_did_not(ctloop_home: Path, use_params, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from ctloop.core.settings import get_settings
    from ctloop.validation.context import open_context
    from ctloop.validation.docs import localize_site, vendor_dir

    use_params(source={"rows_per_day": 300, "incidents": {"2026-01-06": "schema_break"}})
    for day in DAYS:
        run_cli("ingest", "--date", day.isoformat())
    settings = get_settings()
    open_context(settings).build_data_docs()
    site = settings.data_docs_dir
    as_built = tmp_path / "as-built"
    shutil.copytree(site, as_built)
    localized = localize_site(site, vendor_dir(settings.project_dir))
    assert localized.offline, f"not vendored: {localized.missing} (make setup runs npm ci in deploy/datadocs)"
    index = site / "index.html"
    assert not re.search(r'(src|href)="https://(unpkg|cdn|code|maxcdn|stackpath|cdnjs)', index.read_text())

    dom = _dom(index, tmp_path / "profile-offline")
    assert _rows(dom) >= len(DAYS), "every validation run is listed"
    assert "support_escalation_batch" in dom and "bootstrap-table" in dom
    assert _rows(_dom(as_built / "index.html", tmp_path / "profile-cdn")) == 0, "GX's CDN-linked page: empty table"

    done = run_cli("docs", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["offline"] is True
