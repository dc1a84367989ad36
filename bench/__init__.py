"""Speed benchmark of this GLIDE re-implementation: `python -m bench` (or `make bench`).

Runs on whatever device is present (cuda when available, else cpu), prints one table per section
and writes `bench/results/<device>-<date>.json` with a markdown copy of the tables beside it.
Sections (`--only matmul,forward,...`):

- matmul:  the device's dense matmul FLOP/s per dtype, measured in the same run (MFU's denominator)
- forward: one forward of GLIDE (filtered)'s full-size base model and upsampler, random weights, per
           variant (float32, channels_last, bf16/fp16 autocast, torch.compile with --compile): ms per
           call, FLOPs (torch.utils.flop_counter), achieved FLOP/s, MFU, error against float32
- sample:  text -> 256x256 with the reference's settings and with our fastest: seconds and peak
           memory per image (on CPU extrapolated from a few steps per stage unless --full)
- batch:   throughput vs batch size
- shapes:  the embedded default family end to end on CPU: cold start to first image, images/s

`--budget-s SECONDS` skips (and records as skipped) whatever would start after the budget is spent.

Nothing is estimated silently: an extrapolated or estimated figure says so in the table and in the
JSON (`extrapolated`, `status: "skipped"` with `estimated_ms`), and no GPU figure is produced
without a GPU. `--quick` swaps in tiny models so the whole run takes seconds (tests use it).
"""
