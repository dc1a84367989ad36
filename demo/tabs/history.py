"""This browser session's last results, newest first, each with the settings that made it (a click restores them)."""
from typing import Dict, List

import gradio as gr

HISTORY_SIZE = 24   # results kept per session: the PNGs stay on the server's disk until they expire anyway


def with_results(entries: List[Dict], paths: List[str], settings: List[Dict], limit: int = HISTORY_SIZE) -> List[Dict]:
    """`entries` ({"path", "settings"}, newest first) with a run's results in front, the oldest beyond `limit`
    dropped. A run's first image comes first, as in its gallery."""
    made = [{"path": p, "settings": s} for p, s in zip(paths, settings)]
    return (made + list(entries))[:limit]


def history_items(entries: List[Dict]) -> list:
    """The history gallery's (path, caption) pairs: the seed and the first words of the prompt."""
    def caption(settings):
        prompt = settings.get("prompt", "")
        return f"seed {settings.get('seed')} · {prompt[:40] + '…' if len(prompt) > 40 else prompt}"
    return [(e["path"], caption(e["settings"])) for e in entries]


class History:
    """The history's gallery (in an accordion) and its entries, per browser session (gr.State)."""

    def __init__(self):
        with gr.Accordion("History of this session: click an image to restore its settings", open=True,
                          elem_id="history-box"):
            self.gallery = gr.Gallery(show_label=False, columns=6, height="auto", allow_preview=False,
                                      format="png", interactive=False, elem_id="history")
        self.entries = gr.State([])
