"""Evaluation: `shapes` (the shapes family's report, `python -m glide.eval`) and `measures` (rates with Wilson
intervals, diversity, realism, the trade-off plot)."""
