"""An LLM app's parts: providers behind one interface, the support-triage app and its tools."""
