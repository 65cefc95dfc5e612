"""The fuzz properties of tests/test_fuzz.py, for longer and on fresh examples each run.

`make test` runs 60 fixed examples per reader, enough to keep fixed crashes
fixed; this searches: 5,000 examples per reader by default, not derandomized,
so each run explores new inputs. Prints, per reader, how many inputs parsed
and how many were refused with an InputError; exits 1 on the first reader
that let another exception escape (hypothesis prints the shrunk input).

    .venv/bin/python benchmarks/fuzz.py [--examples 5000] [--only run]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--only", default="", help="run only the properties whose name holds this")
    args = parser.parse_args()
    # read when tests.test_fuzz is imported: set them first
    os.environ["TTFT_FUZZ_EXAMPLES"] = str(args.examples)
    os.environ["TTFT_FUZZ_RANDOM"] = "1"
    from tests import test_fuzz

    properties = [getattr(test_fuzz, n) for n in dir(test_fuzz)
                  if n.startswith("test_") and hasattr(getattr(test_fuzz, n), "hypothesis") and args.only in n]
    failed = 0
    for prop in properties:
        start = time.perf_counter()
        try:
            prop()
        except Exception:  # the property's own failure: show it and go on to the next reader
            failed += 1
            traceback.print_exc()
            status = "CRASH"
        else:
            status = "ok"
        print(f"{prop.__name__:40s} {status:5s} {time.perf_counter() - start:7.1f} s", flush=True)
    print("\nreader                                   parsed  refused")
    readers = sorted({reader for reader, _ in test_fuzz.OUTCOMES})
    for reader in readers:
        counts = test_fuzz.OUTCOMES
        print(f"{reader:40s} {counts[(reader, 'parsed')]:6d} {counts[(reader, 'refused')]:8d}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
