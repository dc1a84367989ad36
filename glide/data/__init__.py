"""Procedural data sets used to train and judge small GLIDE models."""
