"""Lineage: what a model version was made from, recorded when it is trained and resolved on demand.

At training time the run and the model version get ``ctloop.lineage.*`` tags (git commit and dirtiness,
DVC hashes of the training and test sets, SHA-256 of ``params.yaml``, the GX suites and the golden set,
the data window; the trigger and Airflow ids are tagged by training already) and a ``lineage/`` artifact
folder: the training set's ``.dvc`` file, the ``params.yaml`` used, the model configuration and the
sources (each curated partition's DVC hash, its raw batches with their SHA-256 and validation result).

``resolve_lineage`` walks version <- run <- training set <- curated partitions <- raw batches <- trigger
and checks each link against what exists now; ``reproduce`` pulls the recorded data version back with
DVC, retrains with the recorded params and compares with the registered model.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import NotReproduced, RegistryError, VersioningError
from ctloop.core.params import spec_text
from ctloop.data.store import file_digest, file_sha256
from ctloop.estimators.scoring import model_output

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ctloop.core.params import Params
    from ctloop.core.settings import Settings
    from ctloop.data.store import Lake
    from ctloop.data.versioning import DataVersion

LINEAGE = "ctloop.lineage."


def sha256_of(path: Path) -> str:
    return file_sha256(path) if path.exists() else "absent"


def md5_of(path: Path) -> str:
    """DVC 3's file hash (``hash: md5``) is the MD5 of the bytes."""
    return file_digest(path, "md5")


def code_version(project_dir: Path) -> dict[str, str]:
    """The git commit of the code and whether tracked files differ from it ("unknown" outside a checkout)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=project_dir, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": "unknown" if dirty is None else str(bool(dirty)).lower()}


def config_hashes(settings: Settings, params: Params) -> dict[str, str]:
    suites = settings.gx_dir / "expectations"
    golden = settings.project_dir / params.evaluation.golden.path
    return {"params_sha256": hashlib.sha256(spec_text(settings.spec_path).encode()).hexdigest(),
            "gx_batch_suite_sha256": sha256_of(suites / f"{params.validation.suite}.json"),
            "gx_training_suite_sha256": sha256_of(suites / f"{params.training.suite}.json"),
            "golden_set_sha256": sha256_of(golden)}


def training_sources(lake: Lake, days: list[date]) -> list[dict[str, Any]]:
    """Each curated partition of a training set: its DVC hash and what it was curated from."""
    from ctloop.data.versioning import dvc_md5

    sources = []
    for day in days:
        part = lake.partition("curated", day)
        dvcfile = part.with_name(f"{part.name}.dvc")
        md5 = dvc_md5(dvcfile) if dvcfile.exists() else None
        manifest_file = part / "_manifest.json"
        manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
        sources.append({"day": day.isoformat(), "curated": str(part), "dvc_md5": md5,
                        "rows": manifest.get("rows"), "raw_files": manifest.get("raw_files", []),
                        "validation": manifest.get("validation")})
    return sources


def data_version_of(data_dir: Path, lake: Lake) -> dict[str, Any]:
    """The training set's DVC version; a directory outside the lake is hashed the way DVC hashes files,
    but has no ``.dvc`` file in the lake to pull it back from."""
    from ctloop.data.versioning import LakeVersions

    versions = LakeVersions.for_lake(lake.root)
    try:
        version: DataVersion | None = versions.version_of(data_dir)
    except VersioningError:  # outside the lake
        version = None
    if version is not None:
        return version.to_dict()
    files = {name: md5_of(data_dir / name) for name in ("train.parquet", "test.parquet")}
    return {"path": str(data_dir), "md5": None, "files": files, "size": None, "dvcfile": None}


def lineage_tags(data_version: dict[str, Any], window: dict[str, Any], code: dict[str, str],
                 hashes: dict[str, str]) -> dict[str, str]:
    files = data_version.get("files") or {}
    return {f"{LINEAGE}{k}": str(v) for k, v in {
        **code, **hashes,
        "training_set_dvc_md5": data_version.get("md5") or "not versioned in the lake",
        "train_md5": files.get("train.parquet", "absent"), "test_md5": files.get("test.parquet", "absent"),
        "training_set_path": data_version.get("path"),
        "data_window": f"[{window['start']}, {window['end']})",
    }.items()}


def user_code_tags(train_config: dict[str, Any]) -> dict[str, str]:
    """The team's own estimator / pipeline code: each module's file SHA-256 (and its distribution's version)."""
    tags = {}
    for record in train_config.get("code") or []:
        value = record.get("sha256") or "unknown"
        if record.get("distribution"):
            value = f"{value} ({record['distribution']}=={record.get('version')})"
        tags[f"{LINEAGE}code.{record['module']}.sha256"] = value
    return tags


def record_lineage(settings: Settings, params: Params, lake: Lake, client: MlflowClient, run_id: str, version: str,
                   data_dir: Path, info: dict[str, Any], train_config: dict[str, Any]) -> dict[str, str]:
    """Tag the run and the model version, and keep what reproduction needs as run artifacts."""
    data_version = data_version_of(data_dir, lake)
    tags = lineage_tags(data_version, info["window"], code_version(settings.project_dir),
                        config_hashes(settings, params)) | user_code_tags(train_config)
    name = params.training.registered_model
    for key, value in tags.items():
        client.set_tag(run_id, key, value[:5000])
        client.set_model_version_tag(name, version, key, value[:5000])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if data_version.get("dvcfile"):
            (out / "training_set.dvc").write_text(data_version["dvcfile"])
        (out / "params.yaml").write_text(spec_text(settings.spec_path))  # the spec as resolved over the defaults
        (out / "train_config.json").write_text(json.dumps(train_config, indent=1, default=str))
        (out / "sources.json").write_text(json.dumps(info.get("sources", []), indent=1, default=str))
        (out / "data_version.json").write_text(json.dumps(
            {k: v for k, v in data_version.items() if k != "dvcfile"}, indent=1))
        client.log_artifacts(run_id, tmp, artifact_path="lineage")
    return tags


# resolution ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Lineage:
    model: str
    version: str
    run_id: str
    aliases: list[str]
    trigger: dict[str, Any]
    code: dict[str, str]
    config: dict[str, str]
    training_set: dict[str, Any]
    partitions: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"complete": self.complete}


def _download_json(client: MlflowClient, run_id: str, path: str) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except Exception:
            return None
        text = Path(local).read_text()
        return json.loads(text) if path.endswith(".json") else text


def resolve_lineage(settings: Settings, params: Params, lake: Lake, version: str) -> Lineage:
    """Walk the chain from a model version down to raw batches, checking each link still holds."""
    from ctloop.registry.mlflow_registry import TAG, configure_mlflow

    client = configure_mlflow(settings)
    name = params.training.registered_model
    try:
        mv = client.get_model_version(name, version)
    except Exception as e:
        raise RegistryError(f"model {name!r} has no version {version}") from e
    tags = dict(mv.tags)
    if f"{LINEAGE}params_sha256" not in tags or not mv.run_id:
        raise RegistryError(f"{name} v{version} carries no lineage (trained before lineage was recorded, or "
                            f"registered outside ctloop)")
    problems: list[str] = []
    data_version = _download_json(client, mv.run_id, "lineage/data_version.json") or {}
    sources = _download_json(client, mv.run_id, "lineage/sources.json") or []
    dvc_md5 = tags.get(f"{LINEAGE}training_set_dvc_md5")
    training_set = {"dvc_md5": dvc_md5, "path": data_version.get("path"), "files": data_version.get("files"),
                    "window": tags.get(f"{LINEAGE}data_window"),
                    "in_dvc_cache": _in_cache(settings, dvc_md5)}
    if not training_set["in_dvc_cache"]:
        problems.append(f"training set {dvc_md5} is not in the DVC cache {settings.home / 'dvc-cache'}")
    partitions = []
    for src in sources:
        part = dict(src)
        part["in_dvc_cache"] = _in_cache(settings, src.get("dvc_md5"))
        if not part["in_dvc_cache"]:
            problems.append(f"curated {src['day']}: DVC version {src.get('dvc_md5')} is not in the cache")
        raws = []
        for raw in src.get("raw_files", []):
            path = Path(raw["path"])
            exists = path.exists()
            intact = exists and sha256_of(path) == raw["sha256"]
            raws.append(raw | {"exists": exists, "intact": intact})
            if not intact:
                problems.append(f"raw batch {path} {'changed since' if exists else 'is missing, was'} used "
                                f"(sha256 {raw['sha256'][:12]})")
        part["raw_files"] = raws
        partitions.append(part)
    if not sources:
        problems.append("the run recorded no source partitions")
    trigger = {k.removeprefix(TAG): v for k, v in tags.items()
               if k.startswith(f"{TAG}trigger") or k.startswith(f"{TAG}airflow.")}
    code = {k: tags.get(f"{LINEAGE}{k}", "unknown") for k in ("git_commit", "git_dirty")}
    config = {k.removeprefix(LINEAGE): v for k, v in tags.items() if k.endswith("_sha256")}
    return Lineage(name, version, mv.run_id, list(getattr(mv, "aliases", []) or []), trigger, code, config,
                   training_set, partitions, problems)


def _in_cache(settings: Settings, md5: str | None) -> bool:
    if not md5 or md5.startswith("not "):
        return False
    return (settings.home / "dvc-cache" / "files" / "md5" / md5[:2] / md5[2:]).exists()


# reproduction --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reproduction:
    model: str
    version: str
    data_version: str
    data_matches: bool
    registered: dict[str, float]
    reproduced: dict[str, float]
    max_metric_difference: float
    max_score_difference: float
    identical: bool
    code_then: str
    code_now: str
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reproduce(settings: Settings, params: Params, lake: Lake, version: str, tolerance: float = 0.0) -> Reproduction:
    """Pull the version's training set back from DVC, retrain with its recorded params and model config,
    and compare test metrics and scores with the registered model. Raises NotReproduced when they differ."""
    import mlflow
    import numpy as np

    from ctloop.core.params import load_params
    from ctloop.data.training_set import read_training_set
    from ctloop.data.versioning import LakeVersions
    from ctloop.estimators.pipeline import build_model, module_record
    from ctloop.registry.mlflow_registry import configure_mlflow

    chain = resolve_lineage(settings, params, lake, version)
    client = configure_mlflow(settings)
    run_id = chain.run_id
    dvcfile = _download_json(client, run_id, "lineage/training_set.dvc")
    if not dvcfile:
        raise RegistryError(f"{chain.model} v{version}: its training set was not versioned in the lake "
                            f"(built outside it); nothing to pull back")
    md5 = str(chain.training_set["dvc_md5"])
    data_dir = LakeVersions.from_settings(settings).materialize(dvcfile, f"v{version}-{md5[:12]}")
    train, test, _ = read_training_set(data_dir)
    notes: list[str] = []
    recorded_files = chain.training_set.get("files") or {}
    data_matches = all(md5_of(data_dir / f) == recorded_files.get(f) for f in ("train.parquet", "test.parquet"))
    if not data_matches:
        notes.append("the pulled training set does not match the recorded file hashes")

    params_text = _download_json(client, run_id, "lineage/params.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(params_text)
        then = load_params(Path(tmp) / "params.yaml")
    config = _download_json(client, run_id, "lineage/train_config.json")
    contract = then.dataset
    pipeline, _ = build_model(contract, then.training, config["model"], config["hyperparameters"], config["seed"])
    code_notes = []
    for record in config.get("code") or []:  # the team's own code, as it is now against as it was then
        now = module_record(record["module"])
        if now.sha256 != record.get("sha256") or now.version != record.get("version"):
            code_notes.append(f"{record['module']} changed since training (sha256 {str(record.get('sha256'))[:12]} "
                              f"then, {str(now.sha256)[:12]} now)")
    pipeline.fit(train[contract.features], train[contract.target])

    registered_model = mlflow.sklearn.load_model(f"models:/{chain.model}/{version}")
    x_test = test[contract.features]
    y = test[contract.target].to_numpy()
    ours = model_output(pipeline, x_test, contract.task, contract.classes)
    theirs = model_output(registered_model, x_test, contract.task, contract.classes)
    reproduced = _metrics(y, ours, contract.task, contract.classes)
    registered = _metrics(y, theirs, contract.task, contract.classes)
    metric_diff = max(abs(reproduced[k] - registered[k]) for k in reproduced)
    score_diff = float(np.max(np.abs(ours - theirs))) if len(ours) else 0.0
    logged = client.get_run(run_id).data.metrics
    for key in ("roc_auc", "brier_score", "root_mean_squared_error", "mean_absolute_error"):
        if key in logged and abs(logged[key] - registered[key]) > 1e-9:
            notes.append(f"the registered model's {key} on the pulled test set is {registered[key]:.6f}, the run "
                         f"logged {logged[key]:.6f}")
    code_now = code_version(settings.project_dir)["git_commit"]
    code_then = chain.code.get("git_commit", "unknown")
    identical = data_matches and metric_diff <= tolerance and score_diff <= max(tolerance, 1e-12)
    if not identical:
        why = []
        if code_then != code_now or chain.code.get("git_dirty") == "true":
            why.append(f"code differs: trained at {code_then[:12]} (dirty={chain.code.get('git_dirty')}), "
                       f"now {code_now[:12]}")
        libs = {p.split("==")[0]: p for p in _download_requirements(chain.model, version)}
        from importlib.metadata import version as pkg_version
        for lib in ("scikit-learn", "numpy", "scipy"):
            if lib in libs and libs[lib] != f"{lib}=={pkg_version(lib)}":
                why.append(f"{libs[lib]} then, {lib}=={pkg_version(lib)} now")
        why.extend(code_notes)
        if config["model"] not in ("logistic_regression", "ridge"):
            label = config.get("label", config["model"])
            why.append(f"{label} may not be bit-for-bit deterministic across thread counts")
        notes.extend(why or ["no recorded difference in data, params, code or libraries explains it"])
    result = Reproduction(chain.model, version, md5, data_matches, registered, reproduced, round(metric_diff, 12),
                          round(score_diff, 12), identical, code_then, code_now, notes)
    if not identical:
        raise NotReproduced(f"{chain.model} v{version} not reproduced: metrics differ by up to {metric_diff:.3g}, "
                            f"scores by up to {score_diff:.3g}; {'; '.join(notes)}", result)
    return result


def _metrics(y: Any, scores: Any, task: str = "binary", classes: list[int] | None = None) -> dict[str, float]:
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    if task == "regression":
        from ctloop.evaluation.evaluate import regression_metrics

        return regression_metrics(y.astype("float64"), scores)
    if task == "multiclass":
        import numpy as np
        from sklearn.metrics import f1_score

        labels = list(classes or range(scores.shape[1]))
        predicted = np.asarray(labels)[scores.argmax(axis=1)]
        return {"log_loss": float(log_loss(y, scores, labels=labels)),
                "f1_macro": float(f1_score(y, predicted, average="macro"))}

    return {"roc_auc": float(roc_auc_score(y, scores)), "brier_score": float(brier_score_loss(y, scores)),
            "log_loss": float(log_loss(y, scores, labels=[0, 1]))}


def _download_requirements(model: str, version: str) -> list[str]:
    import mlflow

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model}/{version}/requirements.txt")
    except Exception:
        return []
    return [line.strip() for line in Path(local).read_text().splitlines() if "==" in line]
