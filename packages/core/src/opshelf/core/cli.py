"""The `opshelf` command: run, watch, resume and inspect workflows; list what is installed.

Workflows plug in through the `opshelf.workflows` entry-point group (or an import path
`module:Class`). Mistakes a user can make (bad config, missing file, unknown workflow or
run) print `opshelf: error: <message>` and exit 2 without a traceback; `--debug` shows it.
Imports are deferred to the subcommand so that `opshelf --help` and `opshelf list` stay fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from opshelf.core import __version__
from opshelf.core.errors import UserError

if TYPE_CHECKING:
    from opshelf.core.rundir import RunDir


def _runs_root(args: argparse.Namespace) -> Path:
    from opshelf.core.rundir import default_runs_root

    return Path(args.runs_dir) if args.runs_dir else default_runs_root()


def _open_run(args: argparse.Namespace) -> RunDir:
    from opshelf.core.rundir import RunDir

    return RunDir.open(args.run, _runs_root(args))


def cmd_run(args: argparse.Namespace) -> int:
    from opshelf.core.local.runner import create_run, launch

    run = create_run(args.workflow, args.config, runs_root=_runs_root(args), name=args.name)
    print(f"opshelf: run {run.name} in {run.path}", file=sys.stderr)
    return launch(run, detach=args.detach, progress=not args.no_progress)


def cmd_status(args: argparse.Namespace) -> int:
    from opshelf.core.local.runs import run_status

    report = run_status(_open_run(args))
    if args.json:
        print(json.dumps({"run": report.run.name, "path": str(report.run.path),
                          "status": report.status, "outcome": report.record.outcome,
                          "driver_pid": report.driver_pid,
                          "steps": report.counts, "running_steps": report.running,
                          "failed_steps": [f.key for f in report.failed]}, indent=2))
    else:
        print(report.format())
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from opshelf.core.local.runs import format_runs, list_runs

    runs = list_runs(_runs_root(args))
    if args.json:
        print(json.dumps([asdict(r) for r in runs], indent=2))
    elif runs:
        print(format_runs(runs))
    else:
        print(f"opshelf: no runs in {_runs_root(args)}", file=sys.stderr)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from opshelf.core.local.runs import stop_run

    print(f"opshelf: {stop_run(_open_run(args), grace_s=args.grace)}", file=sys.stderr)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from opshelf.core.local.runs import format_logs, step_logs

    run = _open_run(args)
    print(format_logs(run, step_logs(run, args.step), lines=args.tail))
    return 0


def cmd_steps(args: argparse.Namespace) -> int:
    from opshelf.core.local.runner import resolve_workflow

    plugin = resolve_workflow(args.workflow)
    names = plugin.step_names(plugin.load_config(args.config))
    print(f"# step names of {plugin.name!r} for this config: keys of its `steps:` block "
          "(`default` applies to every step)", file=sys.stderr)
    print("\n".join(names))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from opshelf.core.local.runner import resume

    return resume(_open_run(args), detach=args.detach, progress=not args.no_progress)


def cmd_rerun(args: argparse.Namespace) -> int:
    from opshelf.core.local.runner import rerun

    old = _open_run(args)
    _new, code = rerun(old, args.config, runs_root=Path(args.runs_dir) if args.runs_dir else None,
                      name=args.name, detach=args.detach, progress=not args.no_progress)
    return code


def cmd_report(args: argparse.Namespace) -> int:
    from opshelf.core.local.runner import resolve_workflow
    from opshelf.core.report import write_comparison
    from opshelf.core.rundir import RunDir

    runs = [RunDir.open(name, _runs_root(args)) for name in args.run]
    if len(runs) == 1 and args.output is None:
        print(resolve_workflow(runs[0].read().workflow_ref).report(runs[0].path))
    else:
        print(write_comparison(runs, Path(args.output) if args.output else None))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from opshelf.core.local.runner import resolve_workflow

    plugin = resolve_workflow(args.workflow)
    print(json.dumps(plugin.Config.model_json_schema(), indent=2))
    return 0


def cmd_export_argo(args: argparse.Namespace) -> int:
    from opshelf.core.export_argo import ArgoSettings, export_argo, upload_instructions

    settings = ArgoSettings(service_account=args.service_account, s3_secret=args.s3_secret,
                            image_registry=args.image_registry,
                            artifact_repository=args.artifact_repository,
                            ssh_secret=args.ssh_secret,
                            secret_refs=tuple(args.secret_ref or ()))
    done = export_argo(args.workflow, args.config, args.output, name=args.name,
                       settings=settings)
    print(upload_instructions(done), file=sys.stderr)
    return 0


_LIST_GROUPS = (("workflows", "opshelf.workflows"), ("ops", "opshelf.ops"),
                ("engines", "opshelf.engines"), ("models", "opshelf.models"))


def cmd_list(args: argparse.Namespace) -> int:
    from opshelf.core.plugins import describe

    listing = {title: describe(group) for title, group in _LIST_GROUPS}
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    for title, entries in listing.items():
        print(f"{title}:")
        if not entries:
            print("  (none installed)")
        width = max((len(n) for n in entries), default=0)
        for name, where in entries.items():
            print(f"  {name.ljust(width)}  {where}")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from opshelf.core import scaffold

    make = scaffold.new_op if args.command == "new-op" else scaffold.new_engine
    files = make(args.package, args.name)
    for path in files:
        print(path)
    print(scaffold.next_steps(files), file=sys.stderr)
    return 0


def _with_runs_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--runs-dir", help="directory holding runs (default: $OPSHELF_RUNS_DIR "
                   "or ./opshelf-runs)")
    return p


def _with_watch(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--detach", action="store_true",
                   help="start in the background and return at once")
    p.add_argument("--no-progress", action="store_true", help="print no progress")
    return p


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    """run, resume, rerun, stop: starting and stopping runs."""
    p = _with_watch(_with_runs_dir(sub.add_parser("run", help="start a workflow run")))
    p.add_argument("workflow", help="installed workflow name (see `opshelf list`) or module:Class")
    p.add_argument("config", help="the workflow's config file (YAML or JSON)")
    p.add_argument("--name", help="run name (default: <workflow>-<YYYYmmdd-HHMMSS>)")
    p.set_defaults(func=cmd_run)

    p = _with_watch(_with_runs_dir(sub.add_parser(
        "resume", help="continue a stopped or failed run; finished steps are not run again")))
    p.add_argument("run", help="run directory or run name")
    p.set_defaults(func=cmd_resume)

    p = _with_watch(_with_runs_dir(sub.add_parser(
        "rerun", help="new run with a changed config, reusing every unchanged finished step")))
    p.add_argument("run", help="the earlier run (directory or name)")
    p.add_argument("config", help="the new config file")
    p.add_argument("--name", help="name of the new run")
    p.set_defaults(func=cmd_rerun)

    p = _with_runs_dir(sub.add_parser(
        "stop", help="stop a running run cleanly (its steps end; `opshelf resume` continues it)"))
    p.add_argument("run", help="run directory or run name")
    p.add_argument("--grace", type=_in_range(float, 0, 3600, " seconds"), default=30.0,
                   metavar="SECONDS",
                   help="time the run gets to stop before its processes are killed (default 30)")
    p.set_defaults(func=cmd_stop)


def _in_range(kind: type[float] | type[int], low: float, high: float,
              unit: str = "") -> Callable[[str], float]:
    """An argparse type: a finite number of `kind` in [low, high], else a usage error naming
    the range (argparse prefixes the argument's name)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range [{low}, {high}]{unit}")
        return value
    return parse


def _add_inspect_commands(sub: argparse._SubParsersAction) -> None:
    """status, runs, logs, report, steps, schema: reading runs and workflows."""
    p = _with_runs_dir(sub.add_parser("status", help="state of a run: steps per phase, "
                                      "failures, the workflow's own table"))
    p.add_argument("run", help="run directory or run name")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.set_defaults(func=cmd_status)

    p = _with_runs_dir(sub.add_parser(
        "runs", help="every run under the runs dir: workflow, status, steps done, age, size"))
    p.add_argument("--json", action="store_true", help="machine-readable list")
    p.set_defaults(func=cmd_runs)

    p = _with_runs_dir(sub.add_parser(
        "logs", help="the driver log of a run, or a step's log and its programs' logs"))
    p.add_argument("run", help="run directory or run name")
    p.add_argument("step", nargs="?", help="step key, or the start of keys (run-fp: every "
                   "slice); see `opshelf status` (default: the driver log)")
    p.add_argument("--tail", type=_in_range(int, 1, 10**7), metavar="N",
                   help="only the last N lines of each log")
    p.set_defaults(func=cmd_logs)

    p = _with_runs_dir(sub.add_parser(
        "report", help="write the workflow's HTML report of a run; of several runs of one "
        "workflow, one file with them side by side"))
    p.add_argument("run", nargs="+", help="run directory or run name (several: compared)")
    p.add_argument("-o", "--output", help="the side-by-side file to write (default: "
                   "compare-RUN1-vs-RUN2....html beside the first run)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("steps", help="the step names a config's `steps:` block may set")
    p.add_argument("workflow", help="installed workflow name or module:Class")
    p.add_argument("config", help="the workflow's config file")
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser("schema", help="JSON Schema of a workflow's config")
    p.add_argument("workflow")
    p.set_defaults(func=cmd_schema)


def _add_export_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-argo", help="write an Argo Workflow manifest (no server needed)")
    p.add_argument("workflow")
    p.add_argument("config")
    p.add_argument("-o", "--output", required=True, help="manifest file to write (YAML)")
    p.add_argument("--name", help="workflow name in the manifest (default: from the workflow)")
    p.add_argument("--service-account", help="Kubernetes service account of the pods "
                   "(default: $OPSHELF_ARGO_SERVICE_ACCOUNT, else the namespace's default)")
    p.add_argument("--s3-secret", help="Kubernetes secret with keys accesskey/secretkey of the "
                   "S3 store (default: $OPSHELF_ARGO_S3_SECRET, else opshelf-s3)")
    p.add_argument("--image-registry", help="registry of the opshelf images, HOST[/PATH] "
                   "(default: $OPSHELF_IMAGE_REGISTRY, else ghcr.io/opshelf)")
    p.add_argument("--artifact-repository", metavar="CONFIGMAP[:KEY]",
                   help="Argo artifactRepositoryRef for the steps' outputs "
                   "(default: $OPSHELF_ARGO_ARTIFACT_REPOSITORY, else Argo's default)")
    p.add_argument("--ssh-secret", help="Kubernetes secret with the SSH key of dispatcher "
                   "steps, mounted at /etc/opshelf/ssh (default: $OPSHELF_ARGO_SSH_SECRET)")
    p.add_argument("--secret-ref", action="append", metavar="NAME=SECRET[/KEY]",
                   help="Kubernetes secret (and key) giving dispatcher pods the variable NAME "
                   "of a remote_profile {env: NAME} reference; repeatable (default: secret "
                   "opshelf-credentials, key NAME lower-cased)")
    p.set_defaults(func=cmd_export_argo)


def _add_plugin_commands(sub: argparse._SubParsersAction) -> None:
    """list, new-op, new-engine: what is installed, and scaffolds for contributors."""
    p = sub.add_parser("list", help="installed workflows, OPs, engines and models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    for command, what in (("new-op", "an OP: pure function, thin OP, conformance test, docs stub"),
                          ("new-engine", "an engine: Engine subclass, replay test, entry point")):
        p = sub.add_parser(command, help=f"scaffold {what} (for contributors)")
        p.add_argument("package", help="package folder, or its name under ./packages (e.g. fp)")
        p.add_argument("name", help="name of the new one, e.g. count-atoms or CountAtoms")
        p.set_defaults(func=cmd_new)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opshelf",
        description="Run opshelf workflows locally, resume them, inspect them, export them to Argo.",
        epilog="A workflow may add commands of its own: opshelf WORKFLOW COMMAND ... "
               "(see opshelf WORKFLOW --help).")
    parser.add_argument("--version", action="version", version=f"opshelf-core {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_run_commands, _add_inspect_commands, _add_export_command,
                _add_plugin_commands):
        add(sub)
    return parser


def workflow_parser(workflow: str) -> argparse.ArgumentParser:
    """`opshelf <workflow> ...`: the commands the workflow plugin adds (`add_cli_commands`)."""
    from opshelf.core.local.runner import resolve_workflow

    plugin = resolve_workflow(workflow)
    parser = argparse.ArgumentParser(prog=f"opshelf {workflow}",
                                     description=f"Commands of the {workflow!r} workflow.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    plugin.add_cli_commands(sub)
    if not sub.choices:
        raise UserError(f"workflow {workflow!r} adds no commands; see `opshelf --help`")
    return parser


def _workflow_of(argv: Sequence[str], parser: argparse.ArgumentParser) -> str | None:
    """The workflow name when argv is `[--debug] <workflow> ...` and not a core command."""
    words = [a for a in argv if a != "--debug"]
    if not words or words[0].startswith("-"):
        return None
    core_commands = next(a for a in parser._actions
                         if isinstance(a, argparse._SubParsersAction)).choices
    if words[0] in core_commands:
        return None  # without reading the installed entry points: `opshelf status` stays fast
    from opshelf.core.plugins import names

    return words[0] if words[0] in names("opshelf.workflows") else None


def main(argv: Sequence[str] | None = None) -> int:
    """Every error ends as one line `opshelf: error: ...` and exit 2 (`--debug` adds the
    traceback); an interrupt exits 130, a closed pipe 141."""
    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        workflow = _workflow_of(argv, parser)
        if workflow is not None:
            argv.remove(workflow)
            parser = workflow_parser(workflow)
        args = parser.parse_args(argv)
        code = args.func(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        print("opshelf: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_went_away()
    except Exception as exc:  # the one place where every error becomes a message
        if debug:
            traceback.print_exc()
        print(f"opshelf: error: {error_line(exc)}", file=sys.stderr)
        return 2
    return code


def error_line(exc: BaseException) -> str:
    """One line for any error: a UserError's message; an OSError with its file; anything
    else (a bug, or a library's failure on input nobody checked) with its type and a pointer
    to --debug."""
    from pydantic import ValidationError

    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or exc.title
        return f"invalid {exc.title}: {where}: {first['msg']} (--debug shows the traceback)"
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text} (--debug shows the traceback)"


def _reader_went_away() -> int:
    """`opshelf list | head`: the reader closed the pipe, which is not our error. Point stdout
    at /dev/null so Python's exit flush cannot fail again; 141 = 128 + SIGPIPE, as a shell
    reports for any program the pipe stopped."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    sys.exit(main())
