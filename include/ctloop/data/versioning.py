"""Data versions with DVC: the lake is a DVC project (no Git; the code repository is the Git one) whose
curated partitions and training sets are tracked by ``.dvc`` files beside them and pushed to the DVC
remote (a directory under ``CTLOOP_HOME`` by default, any DVC remote URL such as ``s3://`` through
``CTLOOP_DVC_REMOTE``). The code repository's DVC project (``dvc.yaml``) shares the same cache and remote.

A model version records the DVC hash of its training set and keeps the ``.dvc`` file as an MLflow
artifact, so ``ctloop reproduce`` can bring that exact data back with ``dvc pull`` even after the lake
has moved on. DVC's own repository lock fails fast when it is busy; every operation here first takes a
host-wide lock, so concurrent tasks queue instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import VersioningError
from ctloop.core.locks import file_lock

if TYPE_CHECKING:
    from dvc.repo import Repo

    from ctloop.core.settings import Settings

# written into a training-set directory after it was versioned; not part of the data version
DVCIGNORE = """\
# run outputs written beside a versioned training set; not part of the data version
evaluation.json
gate_decision.json
# half-written partitions (atomic renames in ctloop.data.store)
.*.staging-*
.*.old-*
.incoming-*
.*.unversioned
.ctloop-dvc.lock
"""


@dataclass(frozen=True)
class DataVersion:
    path: str  # relative to the lake root
    md5: str  # DVC's hash: "<md5>.dir" for a directory
    files: dict[str, str]  # relative file path -> md5, for a directory
    size: int
    dvcfile: str  # the .dvc file's text: enough to pull this version back

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dvc_md5(dvcfile: Path) -> str:
    """The hash a ``.dvc`` file records for its (single) output."""
    import yaml

    return str(yaml.safe_load(dvcfile.read_text())["outs"][0]["md5"])


def dvc_lock_path(lake_root: Path) -> Path:
    # beside .dvc/, not inside it: `dvc init --force` replaces .dvc/ and would take a held lock with it
    return lake_root / ".ctloop-dvc.lock"


class LakeVersions:
    def __init__(self, lake_root: Path, cache_dir: Path, remote: str) -> None:
        self.root = lake_root
        self.cache_dir = cache_dir
        self.remote = remote

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeVersions:
        return cls(settings.lake_root, settings.home / "dvc-cache", settings.dvc_remote_url)

    @classmethod
    def for_lake(cls, lake_root: Path) -> LakeVersions:
        """The lake at ``lake_root`` with the cache and remote it was set up with (so processes whose
        settings differ never re-point it); a new lake gets those of the current settings."""
        from ctloop.core.settings import get_settings

        marker = lake_root / ".dvc" / "ctloop.json"
        if marker.exists():
            known = json.loads(marker.read_text())
            return cls(lake_root, Path(known["cache"]), str(known["remote"]))
        settings = get_settings()
        return cls(lake_root, settings.home / "dvc-cache", settings.dvc_remote_url)

    @contextlib.contextmanager
    def _repo(self) -> Iterator[Repo]:
        from dvc.repo import Repo

        os.environ.setdefault("DVC_NO_ANALYTICS", "1")
        logging.getLogger("dvc").setLevel(logging.WARNING)  # its INFO lines go to stdout
        self.root.mkdir(parents=True, exist_ok=True)
        # DVC reports on stdout; a ``--json`` verb owns stdout, so DVC's chatter goes to stderr
        with file_lock(dvc_lock_path(self.root)), contextlib.redirect_stdout(sys.stderr):
            if not (self.root / ".dvc" / "config").exists():
                Repo.init(str(self.root), no_scm=True, force=True)
                (self.root / ".dvcignore").write_text(DVCIGNORE)
            if self._needs_config():
                with Repo(str(self.root)) as repo:
                    self._configure(repo)
            repo = Repo(str(self.root))
            try:
                yield repo
            finally:
                repo.close()

    def _needs_config(self) -> bool:
        marker = self.root / ".dvc" / "ctloop.json"
        return not marker.exists() or json.loads(marker.read_text()) != self._wanted()

    def _wanted(self) -> dict[str, str]:
        return {"cache": str(self.cache_dir), "remote": self.remote}

    def _configure(self, repo: Repo) -> None:
        with repo.config.edit() as conf:
            conf["core"]["remote"] = "ctloop"
            conf["core"]["analytics"] = False
            conf["cache"]["dir"] = str(self.cache_dir)
            conf["remote"]["ctloop"] = {"url": self.remote}
        (self.root / ".dvc" / "ctloop.json").write_text(json.dumps(self._wanted()))

    def track(self, paths: list[Path], push: bool = True) -> list[DataVersion]:
        """``dvc add`` the paths (files or directories inside the lake), then ``dvc push`` them."""
        rels = [self._rel(p) for p in paths]
        with self._repo() as repo:
            try:
                repo.add([str(self.root / r) for r in rels])
                if push:
                    repo.push(targets=[str(self.root / f"{r}.dvc") for r in rels])
            except Exception as e:
                raise VersioningError(f"dvc could not version {', '.join(rels)} in {self.root}: {e}") from e
            return [self._describe(r) for r in rels]

    def version_of(self, path: Path) -> DataVersion | None:
        """The tracked version of a lake path, read from its ``.dvc`` file and the cache (no DVC call)."""
        rel = self._rel(path)
        if not (self.root / f"{rel}.dvc").exists():
            return None
        return self._describe(rel)

    def materialize(self, dvcfile_text: str, name: str) -> Path:
        """Bring a recorded data version back (``dvc pull`` from the remote) under ``reproduce/<name>``."""
        import yaml

        spec = yaml.safe_load(dvcfile_text)
        spec["outs"][0]["path"] = name
        target_dir = self.root / "reproduce"
        target_dir.mkdir(parents=True, exist_ok=True)
        dvcfile = target_dir / f"{name}.dvc"
        with self._repo() as repo:
            dvcfile.write_text(yaml.safe_dump(spec, sort_keys=False))
            try:
                repo.pull(targets=[str(dvcfile)], force=True)
            except Exception as e:
                raise VersioningError(f"dvc could not pull data version {spec['outs'][0].get('md5')} "
                                      f"from {self.remote}: {e}") from e
        return target_dir / name

    def status(self) -> dict[str, Any]:
        """``dvc status`` of the lake (empty when every tracked path matches its version)."""
        with self._repo() as repo:
            return dict(repo.status())

    def _rel(self, path: Path) -> str:
        path = path if path.is_absolute() else self.root / path
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError as e:
            raise VersioningError(f"{path} is outside the lake {self.root}; only lake data is versioned") from e

    def _describe(self, rel: str) -> DataVersion:
        import yaml

        text = (self.root / f"{rel}.dvc").read_text()
        out = yaml.safe_load(text)["outs"][0]
        md5 = str(out["md5"])
        files: dict[str, str] = {}
        if md5.endswith(".dir"):
            manifest = self.cache_dir / "files" / "md5" / md5[:2] / md5[2:]
            files = {e["relpath"]: e["md5"] for e in json.loads(manifest.read_text())}
        return DataVersion(rel, md5, files, int(out.get("size", 0)), text)
