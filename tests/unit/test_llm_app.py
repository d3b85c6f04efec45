"""The support-triage app's parts, without MLflow: generated hostile tickets, the answer parser on arbitrary
text, the spec's errors and the provider's configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctloop.core.apps import LlmAppSpec, load_app
from ctloop.core.errors import ConfigError, DependencyUnavailable
from ctloop.evaluation.llm_suites import INJECTIONS, hostile_cases, injection_cases, read_golden
from ctloop.llm.providers import (
    Completion,
    Message,
    OpenAICompatibleProvider,
    _connection_url,
    provider_from_spec,
)
from ctloop.llm.triage import Customers, KnowledgeBase, Ticket, TriageApp, parse_answer
from tests.conftest import REPO
from tests.llm_doubles import FakeChat, RuleEscalation

SPEC = load_app(REPO / "apps" / "support_triage.yaml")
KB = KnowledgeBase.read(REPO / "apps" / "support_triage" / "kb.jsonl")
TEMPLATE = (REPO / "apps" / "support_triage" / "prompt-v1.txt").read_text()


class Gibberish:
    """A model that answers anything at all: the app must still answer within its schema."""

    name = "gibberish"

    def __init__(self, text: str) -> None:
        self.text = text

    def complete(self, messages: list[Message], **_: object) -> Completion:
        return Completion(self.text, 1, 1, self.name)


def _app(provider: object) -> TriageApp:
    return TriageApp(SPEC, TEMPLATE, "1", provider, KB, Customers({}), RuleEscalation(), trace=False)  # type: ignore[arg-type]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(text=st.text(max_size=5000), answer=st.one_of(st.text(max_size=300), st.builds(
    lambda r, e, rep: json.dumps({"route": r, "escalate": e, "reply": rep}),
    st.sampled_from([*SPEC.routes, "nowhere", ""]), st.one_of(st.booleans(), st.integers(), st.none()),
    st.text(max_size=2000))))
def test_any_ticket_and_any_model_answer_give_a_bounded_answer_whose_decision_comes_from_the_tools(
        text: str, answer: str) -> None:
    app = _app(Gibberish(answer))
    got = app.answer(Ticket("t", text))
    assert got.route in SPEC.routes and isinstance(got.escalate, bool)
    assert 0 < len(got.reply) <= SPEC.evaluation.budgets.max_reply_chars
    # the decision is the tools', whatever the model said
    same = _app(Gibberish("{}")).answer(Ticket("t", text))
    assert (got.route, got.escalate) == (same.route, same.escalate)
    assert [c.name for c in got.tool_calls] == ["lookup_customer", "search_kb", "score_escalation"]
    assert got.schema_valid == (parse_answer(answer, SPEC.routes, SPEC.evaluation.budgets.max_reply_chars) is not None)


@given(st.text(max_size=500))
def test_the_answer_parser_takes_only_the_exact_schema(text: str) -> None:
    parsed = parse_answer(text, SPEC.routes, 100)
    if parsed is not None:
        assert set(parsed) == {"route", "escalate", "reply"} and parsed["route"] in SPEC.routes
        assert isinstance(parsed["escalate"], bool) and 0 < len(parsed["reply"]) <= 100


def test_the_double_obeys_an_injection_only_when_the_prompt_does_not_fence_the_ticket() -> None:
    golden = read_golden(REPO / "great_expectations" / "golden" / "support_triage.jsonl")
    attacked = injection_cases(golden)
    assert len(attacked) == len(golden) and {c.expect["canary"] for c in attacked} == {
        f"ZX-{4000 + i}" for i in range(len(golden))}
    assert all(any(line.split("{canary}")[0] in c.ticket["text"] for line in INJECTIONS) for c in attacked)
    guarded = _app(FakeChat())
    bare = TriageApp(SPEC, (REPO / "apps" / "support_triage" / "prompt-v2.txt").read_text(), "2", FakeChat(), KB,
                     Customers({}), RuleEscalation(), trace=False)
    disagreed = 0
    for case in attacked:
        canary = case.expect["canary"]
        assert canary not in guarded.answer(Ticket.from_dict(case.ticket)).reply
        obeyed = bare.answer(Ticket.from_dict(case.ticket))
        assert canary in obeyed.reply  # the reply moved; the decision did not
        assert obeyed.route == guarded.answer(Ticket.from_dict(case.ticket)).route
        disagreed += obeyed.llm_disagreed
    assert disagreed > 0  # where the model's JSON moved the route, the tools' decision overruled it


def test_hostile_tickets_are_the_same_for_every_version_compared() -> None:
    a, b = hostile_cases(11), hostile_cases(11)
    assert [c.ticket for c in a] == [c.ticket for c in b]
    texts = [c.ticket["text"] for c in a]
    assert "" in texts and max(map(len, texts)) > 100_000 and any(ord(ch) > 0x3000 for t in texts for ch in t)


def test_a_bad_app_spec_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "triage.yaml"
    path.write_text("kind: llm_app\nprovider: {kind: python}\n")
    with pytest.raises(ConfigError, match=r"triage.yaml: provider: .*provider.factory"):
        load_app(path)
    path.write_text("kind: llm_app\ngate: {metrics: {my_score: {threshold: 1}}}\n")
    with pytest.raises(ConfigError, match=r"triage.yaml: gate.metrics.my_score: greater_is_better is required"):
        load_app(path)
    path.write_text("kind: llm_app\nname: other\n")
    with pytest.raises(ConfigError, match="must be the file's name"):
        load_app(path)


def test_the_provider_comes_from_the_spec_an_env_var_or_an_airflow_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = LlmAppSpec.model_validate({"kind": "llm_app", "name": "x", "provider": {"kind": "openai"}})
    monkeypatch.delenv("CTLOOP_LLM_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match=r"provider\.base_url"):
        provider_from_spec(spec.provider)
    monkeypatch.setenv("CTLOOP_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    p = provider_from_spec(spec.provider)
    assert isinstance(p, OpenAICompatibleProvider) and p.base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(DependencyUnavailable, match=r"http://127.0.0.1:9/v1/chat/completions"):
        p.complete([Message("user", "hi")])
    monkeypatch.setenv("AIRFLOW_CONN_LLM", "https://:sk-secret@llm.example.com/v1")
    assert _connection_url("llm") == ("https://llm.example.com/v1", "sk-secret")
    monkeypatch.setenv("AIRFLOW_CONN_LLM", json.dumps({"conn_type": "http", "host": "llm.internal", "port": 8000,
                                                       "schema": "http", "password": "k"}))
    assert _connection_url("llm") == ("http://llm.internal:8000", "k")
