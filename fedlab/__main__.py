"""Command line: ``python -m fedlab doctor`` (and the course commands).

``doctor``    check this machine and the course environment
``lock-env``  write environment.yml from requirements.lock
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m fedlab", description="The fedlab workbook's commands.")
    sub = parser.add_subparsers(dest="command", required=True)
    doc = sub.add_parser("doctor", help="check the environment, datasets and syft")
    doc.add_argument("--no-syft", action="store_true", help="skip the (20 s) syft import check")
    sub.add_parser("lock-env", help="write environment.yml from requirements.lock")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from fedlab import environment

        return 1 if environment.doctor(check_syft=not args.no_syft) else 0
    if args.command == "lock-env":
        from fedlab import environment

        (environment.ROOT / "environment.yml").write_text(environment.environment_yml(environment.LOCK.read_text()))
        print(f"wrote {environment.ROOT / 'environment.yml'}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
