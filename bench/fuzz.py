"""Long fuzzing run of the front end (the properties of tests/test_fuzz.py, many more examples).

    .venv/bin/python bench/fuzz.py --count 10000

Mutated specs, mutated YAML faces and random bytes go through parse and check;
anything but success or a well-located SpecError fails, and hypothesis prints
the smallest text that shows it. Prints how the mutants fared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, given, settings  # noqa: E402

import test_fuzz  # noqa: E402
from dslc.compiler.check import check_all  # noqa: E402
from dslc.dsl.diagnostics import SpecError, Source  # noqa: E402
from dslc.compiler.layers import LINE_STARTERS
from dslc.dsl.format import format_spec  # noqa: E402
from dslc.dsl.parse import parse  # noqa: E402
from dslc.dsl.yaml_face import from_yaml  # noqa: E402


def outcome(text: str, path: str) -> str:
    """'checks', 'check error' or 'parse error'; raises AssertionError on anything else."""
    try:
        spec = from_yaml(text, path) if path.endswith(".yaml") else parse(text, path)
    except SpecError as err:
        test_fuzz.assert_well_reported(err, path)
        return "parse error"
    if not path.endswith(".yaml"):      # every spec that parses also formats and reads back the same
        assert parse(format_spec(spec, LINE_STARTERS), path) == spec, text
    try:
        check_all(spec, Source(path, text))
    except SpecError as err:
        test_fuzz.assert_well_reported(err, path)
        return "check error"
    return "checks"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10000, help="examples of mutated specs (YAML gets a third)")
    args = ap.parse_args()
    run_settings = settings(max_examples=args.count, deadline=None, database=None,
                            suppress_health_check=list(HealthCheck))
    tally: dict[str, Counter] = {"dlspec": Counter(), "yaml": Counter()}

    @run_settings
    @given(test_fuzz.mutated_specs())
    def specs(case):
        tally["dlspec"][outcome(case[1], case[0])] += 1

    @settings(run_settings, max_examples=max(1, args.count // 3))
    @given(test_fuzz.mutated_yaml())
    def yamls(case):
        tally["yaml"][outcome(case[1], case[0])] += 1

    start = time.perf_counter()
    specs()
    yamls()
    for face, counts in tally.items():
        total = sum(counts.values())
        parts = ", ".join(f"{k} {v} ({v / total:.0%})" for k, v in sorted(counts.items()))
        print(f"{face:7s} {total:6d} mutants: {parts}")
    print(f"no crashes; {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
