"""Command line: ``python -m fedlab doctor`` (and the course commands).

``doctor``           check this machine and the course environment
``lock-env``         write environment.yml from requirements.lock
``course build``     write notebooks/ from solutions/ (``make notebooks``)
``course check``     exit 1 listing what in notebooks/ is out of date with solutions/
``course workdir``   copy notebooks/ into work/ for the learner, never overwriting
``course refresh``   copy new lessons into work/ and offer updated ones beside the learner's
``grade``            grade submitted notebooks (see ``python -m fedlab grade --help``)
``feedback``         one HTML + Markdown report per learner from a JSON gradebook
``gradebook export`` Canvas's or Moodle's grade import CSV from a JSON gradebook and a roster
``gradescope-bundle`` a Gradescope autograder zip for one lesson
``jobs prepare``     fill lesson 06's job wheel folder (needs the package index once) and warm uv's cache
``jobs warm``        build one job environment offline from that folder (``make install`` runs it)
``workshop``         the live room federation: ``serve`` / ``join`` (see
                     ``python -m fedlab workshop --help`` and docs/instructor-guide.md)
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["workshop"]:  # its own parser (argparse's REMAINDER would swallow --help)
        return _run_workshop(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m fedlab", description="The fedlab workbook's commands.")
    sub = parser.add_subparsers(dest="command", required=True)
    doc = sub.add_parser("doctor", help="check the environment, datasets and syft")
    doc.add_argument("--no-syft", action="store_true", help="skip the (20 s) syft import check")
    sub.add_parser("lock-env", help="write environment.yml from requirements.lock")
    jobs = sub.add_parser("jobs", help="lesson 06's offline job set-up: prepare / warm")
    jobs.add_argument("action", choices=("prepare", "warm"))
    _add_course(sub)
    from fedlab import grader

    grader.add_arguments(sub.add_parser("grade", help="grade submitted notebooks in fresh kernels"))
    from fedlab import feedback, lms

    feedback.add_command(sub)
    lms.add_commands(sub)
    ws = sub.add_parser("workshop", add_help=False, help="live room federation: serve / join")
    ws.add_argument("workshop_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is not None:  # commands that carry their own runner (feedback, lms)
        return args.run(args)
    if args.command == "doctor":
        from fedlab import environment

        return 1 if environment.doctor(check_syft=not args.no_syft) else 0
    if args.command == "lock-env":
        from fedlab import environment

        (environment.ROOT / "environment.yml").write_text(environment.environment_yml(environment.LOCK.read_text()))
        print(f"wrote {environment.ROOT / 'environment.yml'}")
        return 0
    if args.command == "jobs":
        from fedlab import remote

        if args.action == "prepare":
            remote.prepare_jobs()
        else:
            print(f"lesson 06's jobs: an offline job environment builds in {remote.warm_jobs():.2f} s "
                  f"(wheels and uv cache in {remote.job_paths()['root']})")
        return 0
    if args.command == "course":
        return _run_course(args)
    if args.command == "grade":
        return grader.run_cli(args)
    if args.command == "workshop":
        return _run_workshop(args.workshop_args)
    return 2


def _run_workshop(rest: list[str]) -> int:
    # fedlab.workshop imports only the standard library at import time (flwr only when it runs).
    from fedlab import workshop

    if not workshop.flower_available():
        print(workshop.not_flower_message(), file=sys.stderr)
        return 2
    return workshop.main(rest)


def _add_course(sub) -> None:
    from fedlab import course

    p = sub.add_parser("course", help="build the student notebooks; make and refresh learners' working copies")
    csub = p.add_subparsers(dest="course_command", required=True)
    for name, text in (
        ("build", "write notebooks/ from solutions/ (and strip outputs from solutions/)"),
        ("check", "exit 1 and list what in notebooks/ is stale, missing or extra"),
    ):
        c = csub.add_parser(name, help=text)
        c.add_argument("--solutions", default=str(course.SOLUTIONS_DIR), help="source notebooks (default solutions/)")
        c.add_argument("--notebooks", default=str(course.NOTEBOOKS_DIR), help="student notebooks (default notebooks/)")
    for name, text in (
        ("workdir", "copy every student notebook into the working folder, never overwriting a file"),
        ("refresh", "copy new lessons and offer updated ones beside the learner's own copies"),
    ):
        c = csub.add_parser(name, help=text)
        c.add_argument("--dir", default="work", help="the learner's working folder (default work/)")
        c.add_argument("--notebooks", default=str(course.NOTEBOOKS_DIR), help="student notebooks (default notebooks/)")


def _run_course(args) -> int:
    from fedlab import course

    if args.course_command == "build":
        return 1 if course.build(args.solutions, args.notebooks) else 0
    if args.course_command == "check":
        problems = course.check(args.solutions, args.notebooks)
        for line in problems:
            print(line)
        if problems:
            print(f"{len(problems)} problem(s): notebooks/ is out of date with solutions/; run `make notebooks`")
            return 1
        print("notebooks/ is up to date with solutions/")
        return 0
    try:
        if args.course_command == "workdir":
            course.make_workdir(args.notebooks, args.dir)
        else:
            course.refresh(args.notebooks, args.dir)
    except ValueError as err:
        print(f"error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
