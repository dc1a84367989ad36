"""The demo's tabs and its model picker; each class lays out its widgets and wires its own events.

Handlers only turn widget values into requests for demo.service and show what comes back.
Sampling events are generators: they stream the queue position, a progress bar per stage and
live x0 previews, and end with the images (see widgets.run_job).
"""
from .compare import CompareTab, rows_html, tradeoff_view
from .inpaint import SKETCH_STRENGTH, InpaintTab
from .picker import ModelPicker
from .text_to_image import IMAGE_TO_IMAGE_STRENGTH, TextToImageTab
from .upscale import UpscaleTab

__all__ = ["CompareTab", "IMAGE_TO_IMAGE_STRENGTH", "InpaintTab", "ModelPicker", "SKETCH_STRENGTH",
           "TextToImageTab", "UpscaleTab", "rows_html", "tradeoff_view"]
