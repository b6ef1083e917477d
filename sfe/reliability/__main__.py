"""``python -m sfe.reliability --seconds N [--faults a,b] [--rate R] [--interval S]``: one soak."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from sfe.reliability.faults import FAULT_KINDS
from sfe.reliability.runner import SoakOptions, run_soak
from sfe.settings import load_settings


def parse(argv: list[str] | None = None) -> SoakOptions:
    """The soak's options from the command line."""
    parser = argparse.ArgumentParser(
        prog="sfe soak",
        description="Run the pipeline under a steady workload while injecting faults, "
        "then check that nothing was lost or applied twice.",
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="workload duration")
    parser.add_argument("--rate", type=float, default=4.0, help="leads per second (middle)")
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"comma-separated fault kinds (default: all of {', '.join(FAULT_KINDS)})",
    )
    parser.add_argument("--interval", type=float, default=12.0, help="seconds between faults")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument(
        "--no-privacy-encryption",
        dest="privacy_encryption",
        action="store_false",
        help="run without sealing personal fields (on by default, as in production)",
    )
    args = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown:
        parser.error(f"unknown fault kinds: {', '.join(unknown)}")
    return SoakOptions(
        seconds=args.seconds,
        rate=args.rate,
        faults=kinds,
        interval=args.interval,
        seed=args.seed,
        drain_timeout=args.drain_timeout,
        privacy_encryption=args.privacy_encryption,
    )


def main(argv: list[str] | None = None) -> int:
    """Run one soak; 0 only when nothing was lost or duplicated."""
    options = parse(argv)
    settings = load_settings()
    # The Kafka clients of this process (the progress observer, the checker) report
    # every refused connection on stderr while the broker restarts: into a file.
    stderr_log = settings.state_dir / "soak" / "stderr.log"
    stderr_log.parent.mkdir(parents=True, exist_ok=True)
    print(f"sfe soak: this process's stderr goes to {stderr_log}", flush=True)
    with stderr_log.open("ab") as handle:
        os.dup2(handle.fileno(), 2)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = run_soak(settings, options, echo=lambda line: print(line, flush=True))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
