"""glide: a fast, faithful re-implementation of OpenAI GLIDE."""
