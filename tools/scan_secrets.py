"""`make secrets`: detect-secrets over every tracked file; any finding fails with file, line and type.

A reviewed false positive is allowed where it stands, with an inline `pragma: allowlist secret` comment
(detect-secrets' own mechanism), so the decision is visible in the file it concerns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    files = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout.decode().split("\0")
    files = [f for f in files if f and Path(f).is_file()]
    scan = Path(sys.executable).with_name("detect-secrets")
    out = subprocess.run([str(scan), "scan", *files], capture_output=True, text=True, check=True).stdout
    results = json.loads(out)["results"]
    for name, findings in sorted(results.items()):
        for f in findings:
            print(f"{name}:{f['line_number']}: {f['type']} (remove it, or mark a reviewed false positive with "
                  "`pragma: allowlist secret`)")
    print(f"secret scan: {len(files)} tracked files, {sum(map(len, results.values()))} findings")
    return 1 if results else 0


if __name__ == "__main__":
    sys.exit(main())
