"""An LLM app version as an MLflow model: a pyfunc that answers tickets with one pinned prompt version,
registered as ``<app>_app`` (the prompt registry holds ``<app>`` itself) and linked to ``prompts:/<app>/<version>`` (MLflow shows the link on both sides),
so a served or batch-scored answer can be traced to the exact template, provider and tools behind it.

The spec, the template and the knowledge base are the model's artifacts; the provider and the escalation
classifier are reached as the spec says when the model loads (``CTLOOP_SERVE_URL`` for the classifier).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.pyfunc import PythonModel

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.apps import LlmAppSpec
    from ctloop.core.settings import Settings


class TriageModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from ctloop.core.apps import load_app
        from ctloop.core.settings import get_settings
        from ctloop.llm.providers import provider_from_spec
        from ctloop.llm.triage import Customers, KnowledgeBase, ServedEscalation, TriageApp

        spec = load_app(Path(context.artifacts["spec"]))
        settings = get_settings()
        url = spec.tools.escalation.url or os.environ.get("CTLOOP_SERVE_URL", "http://127.0.0.1:8000")
        self.app = TriageApp(spec, Path(context.artifacts["prompt"]).read_text(encoding="utf-8"),
                             str(context.model_config["prompt_version"]), provider_from_spec(spec.provider),
                             KnowledgeBase.read(Path(context.artifacts["knowledge_base"])),
                             Customers.read(spec.customers_path(settings)),
                             ServedEscalation(spec.tools.escalation, url), trace=False)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[str]:
        from ctloop.llm.triage import Ticket

        out = []
        for row in model_input.to_dict("records"):
            features = row.get("features")
            ticket = Ticket.from_dict({**row, "features": json.loads(features) if isinstance(features, str) else None})
            out.append(json.dumps(self.app.answer(ticket).outputs()))
        return out


def app_model_name(spec: LlmAppSpec) -> str:
    return f"{spec.name}_app"


def log_app_model(settings: Settings, spec: LlmAppSpec, prompt_version: str, template: str, run_id: str) -> str:
    """Log and register the app with ``prompt_version`` pinned, in the evaluation run that gated it; returns
    the registered model version."""
    import tempfile

    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from ctloop.core.apps import app_path

    with tempfile.TemporaryDirectory() as tmp:
        prompt_file = Path(tmp) / "prompt.txt"
        prompt_file.write_text(template, encoding="utf-8")
        example = pd.DataFrame([{"ticket_id": "t-1", "text": "I was charged twice", "customer_id": "c-001",
                                 "features": json.dumps({"channel": "email"})}])
        signature = infer_signature(example, ['{"route": "billing", "escalate": false, "reply": "..."}'])
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="app", python_model=TriageModel(), signature=signature,
                artifacts={"spec": str(app_path(settings, spec.name)), "prompt": str(prompt_file),
                           "knowledge_base": str(spec.knowledge_base_path(settings.project_dir))},
                model_config={"prompt_version": prompt_version, "app": spec.name},
                prompts=[f"prompts:/{spec.prompt_name}/{prompt_version}"],
                registered_model_name=app_model_name(spec),
                pip_requirements=["mlflow", "pandas", "httpx", "pydantic", "pyyaml"])
    version = str(info.registered_model_version)
    mlflow.MlflowClient().set_model_version_tag(app_model_name(spec), version, "ctloop.prompt",
                                                f"prompts:/{spec.prompt_name}/{prompt_version}")
    return version
