"""A benchmark child (bench.sections): see the section that runs it."""
import json
import sys
import time

spawn = float(sys.argv[1])
t0 = time.time()
import torch  # noqa: E402 - timed

import glide.pipeline as gp  # noqa: E402 - timed

if len(sys.argv) > 7:   # int8 on random weights: the section's small calibration plan (the speed does not depend on it)
    import glide.int8 as int8  # already imported by glide.pipeline

    plan = json.loads(sys.argv[7])
    int8.CALIBRATION["glide-filtered"] = lambda: int8.CalibrationPlan(
        tuple(plan["captions"]), plan["with_defaults"], plan["items"])
pipe = gp.load_pipeline("glide-filtered", device=sys.argv[2], dtype=sys.argv[3], checkpoint_dir=sys.argv[4])
pipe.component("base")
pipe.component("upsample")
t1 = time.time()
if sys.argv[5] == "build":   # only the first use: int8's models built into the cache
    print("BENCH_RESULT " + json.dumps({"seconds": t1 - spawn, "load_s": t1 - t0, "dtype": pipe.dtype}))
    sys.exit(0)
result = pipe.generate([sys.argv[6]], seed=0, **json.loads(sys.argv[5]))
t2 = time.time()
assert result.images[0].size == (256, 256)
# The next image in the same process, as a server (the demo, `glide serve`) or a script making several sees it:
# what a first run pays once per process (OpenVINO's first run at each input shape) is not in it.
pipe.generate([sys.argv[6]], seed=1, **json.loads(sys.argv[5]))
t3 = time.time()
print("BENCH_RESULT " + json.dumps({"interpreter_s": t0 - spawn, "load_s": t1 - t0, "generate_s": t2 - t1,
      "seconds": t2 - spawn, "next_image_s": t3 - t2, "threads": torch.get_num_threads(), "dtype": pipe.dtype,
      "precision": pipe.precision.describe()}))
