"""Does guidance far above the interval explain why the log-SNR and Karras spacings fail under guidance?

    OMP_WAIT_POLICY=PASSIVE python scripts/spacing_probe.py      # ~4 minutes on 2 CPU cores

UniPC 6 with each spacing, classifier-free 3 at every step and only inside the SD-XL interval, on 64
fresh two-shape prompts (glide.evaluation.shapes' scenes and checker); prints one line per condition
with its Wilson 95% interval. docs/shapes-family.md quotes it.
"""
from glide.evaluation import shapes as evaluation
from glide.pipeline import load_pipeline
from samplers.builtin_guidance import SDXL_INTERVAL

pipe = load_pipeline("shapes", device="cpu", dtype="float32")
conditions = [(f"unipc 6 {spacing}, classifier-free 3, {'interval' if interval else 'every step'}",
               dict(sampler="unipc", steps=6, sampler_params={"spacing": spacing}, guidance="classifier-free",
                    guidance_scale=3.0, guidance_params={"interval": interval}))
              for spacing in ("time", "karras", "logsnr") for interval in ("", SDXL_INTERVAL)]
rows = evaluation.eval_text_to_image(pipe, 64, conditions, [], kinds=(2,))
for row in rows:
    print(f"{row['condition']}: {evaluation.percent(row['all'])}")
