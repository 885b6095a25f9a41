"""``evalkit serve``: a model behind an OpenAI-compatible API (see app.py and engine.py)."""
