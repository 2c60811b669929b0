"""Constitutional AI demo: a compact Gradio app (see README.md and docs/http-api.md)."""

__version__ = "0.1.0"
