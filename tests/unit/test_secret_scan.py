"""The CI secret scan (`make secrets`, part of `make test`): a committed credential fails it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _scan(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "settings_prod.py").write_text(text)
    subprocess.run(["git", "add", "settings_prod.py"], cwd=tmp_path, check=True)
    return subprocess.run([sys.executable, str(REPO / "tools" / "scan_secrets.py")], cwd=tmp_path,
                          capture_output=True, text=True)


def test_a_committed_cloud_key_fails_the_scan(tmp_path: Path) -> None:
    # assembled at run time so this file itself holds no key
    key_id, secret = "AKIA" + "IOSFODNN7" + "EXAMPLE", "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
    found = _scan(tmp_path, f'AWS_ACCESS_KEY_ID = "{key_id}"\naws_secret_access_key = "{secret}"\n')
    assert found.returncode == 1
    assert "settings_prod.py:1: AWS Access Key" in found.stdout


def test_configuration_read_from_the_environment_passes(tmp_path: Path) -> None:
    clean = _scan(tmp_path, 'import os\nTOKEN = os.environ["CTLOOP_SERVING_TOKEN"]\n')
    assert clean.returncode == 0, clean.stdout
    assert "1 tracked files, 0 findings" in clean.stdout
