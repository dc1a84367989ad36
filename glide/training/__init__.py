"""Training: `trainer` (any GLIDE-family model: hybrid loss, EMA, classifier-free dropout; `python -m glide.training`),
`shapes` (the shapes family's tokenizer and batches) and `default` (the shipped recipe, `python -m glide.train_default`)."""
