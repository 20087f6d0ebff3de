"""``python -m bench [--quick]``: every benchmark, each merging its figures into results.json.

Each benchmark runs in a process of its own, so one's memory (the pipeline keeps a million frames)
does not show up in another's figures (the engine's resident memory).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHMARKS = (
    "bench.pipeline",
    "bench.curves",
    "bench.e2e",
    "bench.rotation",
    "bench.persistence",
    "bench.backup",
    "bench.consul",
    "bench.fleet",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short version (under 3 minutes)")
    args = parser.parse_args(argv)
    flags = ["--quick"] if args.quick else []
    failed = []
    for module in BENCHMARKS:
        print(f"== {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module, *flags], check=False).returncode:
            failed.append(module)
    print("figures written to bench/results.json")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
