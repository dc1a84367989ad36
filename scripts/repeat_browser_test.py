"""Run one browser test N times, each in a pytest run of its own (a fresh demo server and browser), and
print the tally.

    python scripts/repeat_browser_test.py [--times 10] [TEST]   # default: the successive-edits scenario

A flaky interaction (a lost stroke, an editor that never gets ready) shows as fewer than N passes; each
run is a fresh page, as in tests/test_browser.py. Heavy on the CPU: on a shared box run it under the lock
(`flock /tmp/glide-cpu.lock ...`). Exits non-zero unless every run passed.
"""
import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = "tests/test_browser.py::test_generate_then_inpaint_then_three_successive_edits"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("test", nargs="?", default=DEFAULT, help=f"a pytest node id (default {DEFAULT})")
    parser.add_argument("--times", type=int, default=10, help="how many runs (default 10)")
    args = parser.parse_args(argv)
    if args.times < 1:
        parser.error("--times must be at least 1")
    passed = 0
    for run in range(1, args.times + 1):
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", args.test],
                              cwd=ROOT, capture_output=True, text=True)
        last = (done.stdout.strip().splitlines() or ["no output"])[-1]
        ok = done.returncode == 0 and re.search(r"\b1 passed\b", last) is not None
        passed += ok
        print(f"run {run}: {'pass' if ok else 'FAIL'} ({last})", flush=True)
        if not ok:
            print(done.stdout[-3000:], done.stderr[-1000:], sep="\n")
    print(f"{args.test}: {passed} of {args.times} runs passed")
    return 0 if passed == args.times else 1

if __name__ == "__main__":
    sys.exit(main())
