"""Scripts the benchmark runs in a fresh Python process, to time what a user's first
run costs (interpreter, imports, loading). Each prints one `BENCH_RESULT {json}` line."""
