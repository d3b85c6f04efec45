"""The support-triage LLM app: a ticket in, ``{route, escalate, reply}`` out.

The decisions come from tools, never from the model: the knowledge base gives the route, the trained
escalation classifier (served by ``ctloop serve``) decides escalation, with the customer's record from the
lake as its features. The LLM writes the reply and the JSON around it; a JSON answer that disagrees with the
tools is recorded (``llm_disagreed``) and overruled, and an answer that is not valid JSON gets a safe
templated reply. So a prompt injection can at worst move the reply, which the evaluation suites catch.

Every call is one MLflow trace when tracing is on: a span per tool call (``TOOL``, with its arguments and
result) and one for the model (``CHAT_MODEL``, with ``mlflow.chat.tokenUsage``), so scorers read tool order
and token use from the trace.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ctloop.core.errors import ConfigError, DataUnreadable, DependencyUnavailable
from ctloop.llm.providers import ChatProvider, Completion, Message

if TYPE_CHECKING:
    from ctloop.core.apps import EscalationToolSpec, LlmAppSpec

SYSTEM = "You are a customer-support triage assistant. You answer with one JSON object."
REFUSAL = re.compile(r"\b(i can(?:no|')t help|i(?: a|')m (?:not able|unable) to|i cannot assist)\b", re.I)
MAX_TICKET_CHARS = 2000  # the part of a ticket the model reads (a small local model has a 2k-token context)
MAX_ID_CHARS = 64
VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    text: str
    customer_id: str | None = None
    features: dict[str, Any] = field(default_factory=dict)  # what the support system already knows

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ticket:
        text = data.get("text")
        if not isinstance(text, str):
            raise ConfigError(f"ticket {str(data.get('ticket_id'))[:MAX_ID_CHARS]!r}: text: expected a string")
        customer = data.get("customer_id")
        features = data.get("features") or {}
        if not isinstance(features, dict):
            raise ConfigError("ticket: features: expected a mapping")
        return cls(str(data.get("ticket_id", ""))[:MAX_ID_CHARS], text,
                   None if customer is None else str(customer)[:MAX_ID_CHARS], dict(features))


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    result: dict[str, Any] | None
    latency_ms: float
    error: str | None = None


@dataclass(frozen=True)
class TriageAnswer:
    route: str
    escalate: bool
    reply: str
    prompt_version: str
    model: str
    schema_valid: bool      # the model's own answer was the JSON asked for
    llm_disagreed: bool     # its route or escalate differed from the tools' (overruled)
    refused: bool
    tool_calls: tuple[ToolCall, ...]
    input_tokens: int
    output_tokens: int
    latency_ms: float

    def outputs(self) -> dict[str, Any]:
        """What the app returns to its caller."""
        return {"route": self.route, "escalate": self.escalate, "reply": self.reply}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EscalationScorer(Protocol):
    def score(self, features: dict[str, Any]) -> float: ...


class ServedEscalation:
    """The escalation model as `ctloop serve` serves it: ``POST {url}/models/{model}/predict``."""

    def __init__(self, spec: EscalationToolSpec, url: str, token: str | None = None) -> None:
        self.url = f"{url.rstrip('/')}/models/{spec.model}/predict"
        self.timeout, self.token = spec.timeout_seconds, token

    def score(self, features: dict[str, Any]) -> float:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            resp = httpx.post(self.url, json=features, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise DependencyUnavailable(f"{self.url}: the escalation model did not answer ({type(e).__name__})") from e
        if resp.status_code != 200:
            raise DependencyUnavailable(f"{self.url}: HTTP {resp.status_code}: {resp.text[:200]}")
        return float(resp.json()["score"])


@dataclass(frozen=True)
class Article:
    id: str
    queue: str
    title: str
    keywords: tuple[str, ...]
    answer: str


class KnowledgeBase:
    """Articles (JSON lines: id, queue, title, keywords, answer); search is keyword overlap, so it is exact,
    fast and explainable: the route it gives is the queue of the best article."""

    def __init__(self, articles: list[Article]) -> None:
        self.articles = articles

    @classmethod
    def read(cls, path: Path) -> KnowledgeBase:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise DataUnreadable(f"{path}: the knowledge base cannot be read ({e.strerror})") from e
        articles = []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                a = json.loads(line)
                articles.append(Article(str(a["id"]), str(a["queue"]), str(a["title"]),
                                        tuple(str(k).lower() for k in a["keywords"]), str(a["answer"])))
            except (ValueError, KeyError, TypeError) as e:
                raise DataUnreadable(f"{path}:{i}: not an article (id, queue, title, keywords, answer)") from e
        return cls(articles)

    def search(self, text: str) -> Article | None:
        words = set(re.findall(r"\w+", text.lower()))
        best, hits = None, 0
        for a in self.articles:
            n = sum(1 for k in a.keywords if k in words)
            if n > hits:
                best, hits = a, n
        return best


class Customers:
    """The customer table of the lake (one row per ``customer_id``), read once."""

    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows

    @classmethod
    def read(cls, path: Path) -> Customers:
        import pandas as pd

        if not path.exists():
            return cls({})
        try:
            frame = pd.read_parquet(path)
        except Exception as e:
            raise DataUnreadable(f"{path}: the customer table cannot be read ({type(e).__name__})") from e
        if "customer_id" not in frame.columns:
            raise DataUnreadable(f"{path}: column customer_id is missing")
        return cls({str(r.pop("customer_id")): r for r in frame.to_dict("records")})

    def lookup(self, customer_id: str | None) -> dict[str, Any] | None:
        return None if customer_id is None else self.rows.get(customer_id)


def answer_schema(routes: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["route", "escalate", "reply"],
            "properties": {"route": {"type": "string", "enum": list(routes)}, "escalate": {"type": "boolean"},
                           "reply": {"type": "string"}}}


def parse_answer(text: str, routes: tuple[str, ...], max_chars: int) -> dict[str, Any] | None:
    """The model's JSON answer when it is exactly the schema (a known route, a boolean, a reply within
    bounds); None otherwise."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != {"route", "escalate", "reply"}:
        return None
    if data["route"] not in routes or not isinstance(data["escalate"], bool):
        return None
    reply = data["reply"]
    if not isinstance(reply, str) or not reply.strip() or len(reply) > max_chars:
        return None
    return data


@contextmanager
def _span(name: str, span_type: str, inputs: dict[str, Any], on: bool) -> Iterator[Any]:
    if not on:
        yield None
        return
    import mlflow

    with mlflow.start_span(name=name, span_type=span_type) as span:
        span.set_inputs(inputs)
        yield span


class TriageApp:
    """One prompt version, one provider, the tools: ``answer(ticket)``. Thread-safe when the provider is."""

    def __init__(self, spec: LlmAppSpec, prompt_template: str, prompt_version: str, provider: ChatProvider,
                 kb: KnowledgeBase, customers: Customers, escalation: EscalationScorer, trace: bool = True) -> None:
        self.spec, self.template, self.prompt_version = spec, prompt_template, prompt_version
        self.provider, self.kb, self.customers, self.escalation, self.trace = provider, kb, customers, escalation, trace
        self.schema = answer_schema(spec.routes)

    def _tool(self, calls: list[ToolCall], name: str, arguments: dict[str, Any], fn: Any) -> dict[str, Any] | None:
        start = time.perf_counter()
        with _span(name, "TOOL", arguments, self.trace) as span:
            try:
                result, error = fn(), None
            except DependencyUnavailable as e:
                result, error = None, str(e)
            if span is not None:
                span.set_outputs(result if error is None else {"error": error})
        calls.append(ToolCall(name, arguments, result, round((time.perf_counter() - start) * 1000, 3), error))
        return result

    def render(self, ticket_text: str, customer: dict[str, Any] | None, article: Article | None, route: str,
               escalate: bool) -> str:
        values = {"ticket": ticket_text, "route": route, "escalate": "yes" if escalate else "no",
                  "customer": json.dumps(customer or {}, default=str, sort_keys=True),
                  "article": f"{article.title}: {article.answer}" if article else "(no article matched)",
                  "next_step": article.answer if article else "We will reply within one business day."}
        # MLflow's {{var}} syntax, filled in one pass: a ticket that holds "{{route}}" stays as written
        return VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), self.template)

    def answer(self, ticket: Ticket) -> TriageAnswer:
        start = time.perf_counter()
        with _span("triage", "AGENT", {"ticket_id": ticket.ticket_id, "text": ticket.text[:500]}, self.trace) as root:
            answer = self._answer(ticket, start)
            if root is not None:
                root.set_outputs(answer.outputs())
                root.set_attribute("ctloop.prompt_version", self.prompt_version)
        return answer

    def _answer(self, ticket: Ticket, start: float) -> TriageAnswer:
        text = ticket.text[:MAX_TICKET_CHARS]
        calls: list[ToolCall] = []
        customer = self._tool(calls, "lookup_customer", {"customer_id": ticket.customer_id},
                              lambda: self.customers.lookup(ticket.customer_id) or {})
        article: Article | None = None

        def search() -> dict[str, Any]:
            nonlocal article
            article = self.kb.search(text)
            return asdict(article) if article else {}

        self._tool(calls, "search_kb", {"text": text[:200]}, search)
        route = article.queue if article and article.queue in self.spec.routes else self.spec.routes[-1]
        features = {**ticket.features, **(customer or {}), "message_length": len(ticket.text)}
        scored = self._tool(calls, "score_escalation", {"features": features},
                            lambda: {"score": self.escalation.score(features)})
        # the classifier unreachable: escalate, so that a person looks (the tool call records why)
        escalate = scored is None or scored["score"] >= self.spec.tools.escalation.threshold
        prompt = self.render(text, customer, article, route, escalate)
        completion = self._complete(prompt)
        budgets = self.spec.evaluation.budgets
        parsed = parse_answer(completion.text, self.spec.routes, budgets.max_reply_chars)
        if parsed is None:
            reply = (f"Thank you for contacting us. Your ticket is with our {route} team"
                     f"{' and has been escalated' if escalate else ''}; we will reply shortly.")
        else:
            reply = parsed["reply"].strip()
        disagreed = parsed is not None and (parsed["route"] != route or parsed["escalate"] != escalate)
        return TriageAnswer(route, escalate, reply, self.prompt_version, completion.model, parsed is not None,
                            disagreed, bool(REFUSAL.search(reply)), tuple(calls), completion.input_tokens,
                            completion.output_tokens, round((time.perf_counter() - start) * 1000, 3))

    def _complete(self, prompt: str) -> Completion:
        messages = [Message("system", SYSTEM), Message("user", prompt)]
        p = self.spec.provider
        with _span("llm", "CHAT_MODEL", {"messages": [asdict(m) for m in messages]}, self.trace) as span:
            completion = self.provider.complete(messages, json_schema=self.schema, max_tokens=p.max_tokens,
                                                temperature=p.temperature)
            if span is not None:
                span.set_outputs({"text": completion.text, "model": completion.model})
                span.set_attribute("mlflow.chat.tokenUsage", {
                    "input_tokens": completion.input_tokens, "output_tokens": completion.output_tokens,
                    "total_tokens": completion.total_tokens})
        return completion


def cost(spec: LlmAppSpec, input_tokens: int, output_tokens: int) -> float:
    return input_tokens / 1000 * spec.prices.input_per_1k + output_tokens / 1000 * spec.prices.output_per_1k
