"""The Gradio demo of GLIDE: `python app.py` (see demo.app), built on glide.pipeline."""
from importlib.util import find_spec

# The demo's packages come with the `demo` extra (pyproject.toml); the core install has none of them.
if find_spec("gradio") is None:
    raise ModuleNotFoundError("the demo needs gradio, which is not installed: pip install 'glide[demo]'", name="gradio")
