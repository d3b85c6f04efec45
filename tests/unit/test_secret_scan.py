"""The CI secret scan (`make secrets`, part of `make test`): a committed credential fails it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOOK = str(Path(sys.executable).with_name("detect-secrets-hook"))


def _scan(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    baseline = tmp_path / ".secrets.baseline"
    shutil.copy(REPO / ".secrets.baseline", baseline)  # the hook may rewrite its baseline
    target = tmp_path / "settings_prod.py"
    target.write_text(text)
    return subprocess.run([HOOK, "--baseline", str(baseline), str(target)], capture_output=True, text=True)


def test_a_committed_cloud_key_fails_the_scan(tmp_path: Path) -> None:
    # assembled at run time so this file itself holds no key
    key_id, secret = "AKIA" + "IOSFODNN7" + "EXAMPLE", "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
    found = _scan(tmp_path, f'AWS_ACCESS_KEY_ID = "{key_id}"\naws_secret_access_key = "{secret}"\n')
    assert found.returncode == 1
    assert "AWS Access Key" in found.stdout and "settings_prod.py" in found.stdout


def test_configuration_read_from_the_environment_passes(tmp_path: Path) -> None:
    clean = _scan(tmp_path, 'import os\nTOKEN = os.environ["CTLOOP_SERVING_TOKEN"]\n')
    assert clean.returncode == 0, clean.stdout
