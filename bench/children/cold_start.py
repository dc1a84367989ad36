"""A benchmark child (bench.sections): see the section that runs it."""
import json
import sys
import time

spawn = float(sys.argv[1])
t0 = time.time()
import torch  # noqa: E402 - timed

import glide.pipeline as gp  # noqa: E402 - timed

t1 = time.time()
pipe = gp.load_pipeline("shapes", device="cpu", dtype=sys.argv[2])
pipe.component("base")
pipe.component("upsample")
t2 = time.time()
kwargs = json.loads(sys.argv[3])
result = pipe.generate([sys.argv[4]], **kwargs)
t3 = time.time()
assert result.images
print("BENCH_RESULT " + json.dumps({"interpreter_s": t0 - spawn, "import_s": t1 - t0, "load_s": t2 - t1,
      "generate_s": t3 - t2, "first_image_s": t3 - spawn, "threads": torch.get_num_threads(), "dtype": pipe.dtype,
      "precision": pipe.precision.describe()}))
