"""The tables ``ctloop status`` and ``ctloop models`` print (status is also shown at the end of the demo)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from rich.tree import Tree

    from ctloop.flows.deployment import ModelOverview
    from ctloop.flows.lineage import Lineage


def models_table(overview: list[ModelOverview]) -> Table:
    table = Table(title="models")
    for col in ("model", "task", "champion", "last run", "last drift decision"):
        table.add_column(col)
    for m in overview:
        if m.error:
            table.add_row(m.name, "[red]invalid spec[/red]", "", "", m.error)
            continue
        run = m.last_run or {}
        drift = m.last_drift or {}
        table.add_row(m.name, m.task or "", f"v{m.champion}" if m.champion else "-",
                      f"{run['dag_run'].split('/')[0]} {run['outcome']} {run['at'][:16]}" if run else "-",
                      f"{drift['window']} {drift['status']}" if drift else "-")
    return table


def status_table(st: dict[str, Any]) -> Table:
    table = Table(title=f"registered model {st['model']}")
    regression = any("r2_score" in (st.get(a) or {}).get("metrics", {}) for a in ("champion", "challenger", "previous"))
    shown = (("r2_score", "r2"), ("root_mean_squared_error", "rmse"), ("mean_absolute_error", "mae")) if regression \
        else (("roc_auc", "roc_auc"), ("f1_score", "f1"), ("brier_score", "brier"))
    for col in ("alias", "version", *(label for _, label in shown), "gate", "since", "why"):
        table.add_column(col)
    for alias in ("champion", "challenger", "candidate", "previous", "previous-2"):
        v = st.get(alias)
        if v is None:
            if alias in ("champion", "challenger", "previous"):
                table.add_row(alias, "-", "", "", "", "", "", "")
            continue
        m, t = v["metrics"], v["tags"]
        gate = {True: "passed", False: "REJECTED"}.get(v["gate"]["passed"], "-") if v["gate"] else (
            "rolled back" if t.get("rolled_back_at") else "-")
        since = t.get("demoted_at") if alias.startswith("previous") else t.get("promoted_at", v["created"])
        table.add_row(alias, v["version"], *(str(m.get(k, "")) for k, _ in shown), gate, since or v["created"],
                      t.get("promoted_reason", t.get("trigger_reason", "")))
    return table


def lineage_tree(chain: Lineage) -> Tree:
    """version <- run <- training set <- curated partitions <- raw batches, with the trigger and config."""
    from rich.tree import Tree

    aliases = f" @{', @'.join(chain.aliases)}" if chain.aliases else ""
    root = Tree(f"[bold]{chain.model} v{chain.version}[/bold]{aliases}")
    run = root.add(f"run {chain.run_id}  code {chain.code['git_commit'][:12]} (dirty: {chain.code['git_dirty']})")
    trig = chain.trigger
    run.add(f"trigger: {trig.get('trigger', '?')}: {trig.get('trigger_reason', '')}  "
            f"{trig.get('airflow.dag_id', '')} {trig.get('airflow.run_id', '')}".rstrip())
    run.add("config: " + ", ".join(f"{k.removesuffix('_sha256')} {v[:12]}" for k, v in chain.config.items()))
    ts = chain.training_set
    mark = "[green]in cache[/green]" if ts["in_dvc_cache"] else "[red]not in cache[/red]"
    data = run.add(f"training set {ts['window']}  DVC {ts['dvc_md5']} {mark}")
    for part in chain.partitions:
        ok = "[green]in cache[/green]" if part["in_dvc_cache"] else "[red]not in cache[/red]"
        node = data.add(f"curated {part['day']}  DVC {part['dvc_md5']} {ok}  rows {part['rows']}")
        validation = part.get("validation") or {}
        for raw in part["raw_files"]:
            state = "[green]intact[/green]" if raw["intact"] else "[red]changed or missing[/red]"
            node.add(f"raw {raw['path']}  sha256 {raw['sha256'][:12]} {state}  validation: "
                     f"{validation.get('suite', '?')} success={validation.get('success', '?')}")
    for problem in chain.problems:
        root.add(f"[red]problem:[/red] {problem}")
    return root


def rollout_step_line(i: int, step: dict[str, Any]) -> str:
    """One finished step of a staged rollout (an entry of ``RolloutState.steps``): its outcome and why."""
    return f"step {i} ({step['weight']:.0%}): {step['outcome']} after {step['wall_seconds']:.0f} s: " \
           f"{'; '.join(step['reasons'])}"
