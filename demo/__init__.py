"""The Gradio demo of GLIDE: `python app.py` (see demo.app), built on glide.pipeline."""
