"""`qforge`: submit, list, status, show, wait, result, export, cancel, retry, delete,
worker, controller.

Exit codes: 0 success; 1 the job failed (with --wait, or `result` of a failed job);
2 invalid input or usage (one line on stderr, nothing written); 3 no such job.
Nothing a user can type produces a traceback (QFORGE_DEBUG=1 shows one for bugs).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from qforge.service.problems import (
    EXIT_FAILED,
    EXIT_NO_JOB,
    EXIT_OK,
    EXIT_USAGE,
    STORE_FULL_OR_READ_ONLY,
    UsageError,
)
from qforge.settings import Settings
from qforge.store.groups import validate_group
from qforge_runner.errors import InputError

__all__ = ["EXIT_FAILED", "EXIT_NO_JOB", "EXIT_OK", "EXIT_USAGE", "STORE_FULL_OR_READ_ONLY",
           "UsageError", "build_parser", "main", "run"]
STATUSES = ["QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
# qforge.inputs.Format's values (a test keeps them equal): the readers, and the other
# commands' modules, are imported by the command that needs them, so that `qforge worker`
# starts without them.
FORMATS = ["xyz", "sdf", "smi", "json"]
# qforge_runner.result.ErrorType's values but `cancelled` (a test keeps them equal).
ERROR_TYPES = ["input_error", "convergence_error", "timeout", "resource_error", "xtb_error",
               "infrastructure_error"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line, as for every other rejection (the usage is one --help away)
        print(f"qforge: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _group(text: str) -> str:
    try:
        return validate_group(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="qforge", description="xtb calculations as jobs")
    p.add_argument("--jobs-dir", type=Path, default=None,
                   help="the job store (env JOBS_DIR, default ./jobs)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("submit", help="submit molecules: files, folders or - (stdin)",
                       description="Submit one job per molecule. Formats: XYZ (one or many "
                       "frames), SDF/MOL, SMILES (.smi), QCSchema JSON (one or a list); "
                       "see docs/submitting.md.")
    s.add_argument("inputs", nargs="+", metavar="FILE|DIR|-",
                   help="molecule files, folders of them, or - for stdin")
    s.add_argument("--format", choices=FORMATS,
                   help="the format of every input (default: from the extension; stdin "
                        "and unknown extensions are told from their first lines)")
    s.add_argument("--group", help="the campaign these jobs belong to "
                                   "(default: the first input's name and the time)")
    s.add_argument("--skip-invalid", action="store_true", dest="skip_invalid",
                   help="submit the valid molecules and list the invalid ones")
    s.add_argument("--force", action="store_true",
                   help="run molecules again that are already queued, running or completed")
    s.add_argument("--conformers", type=_positive_int, metavar="N",
                   help="up to N conformers per molecule, each a job (SMILES, SDF/MOL; "
                        "ETKDGv3, MMFF94; docs/ensembles.md)")
    s.add_argument("--conformer-rmsd", type=_positive_float, dest="conformer_rmsd",
                   default=None, metavar="ANGSTROM",
                   help="heavy-atom RMSD below which two conformers count as one "
                        "(default 0.5)")
    s.add_argument("--method", choices=["gfn2", "gfn1", "gfn0", "gfnff"])
    s.add_argument("--task", choices=["opt", "sp", "hess", "ohess"])
    s.add_argument("--opt-level", dest="opt_level",
                   choices=["crude", "sloppy", "loose", "lax", "normal", "tight", "vtight",
                            "extreme"])
    s.add_argument("--charge", type=_int)
    s.add_argument("--uhf", type=_int, help="number of unpaired electrons")
    s.add_argument("--solvent", help="ALPB solvent, e.g. water")
    s.add_argument("--timeout", type=_positive_float, help="seconds (default JOB_TIMEOUT)")
    s.add_argument("--temperature", type=_positive_float,
                   help="K, for the thermochemistry of hess and ohess (default 298.15)")
    s.add_argument("--etemp", type=_positive_float,
                   help="K, xtb's electronic temperature (default: xtb's, 300)")
    s.add_argument("--scc-iterations", type=_positive_int, dest="scc_iterations",
                   help="xtb's SCC iterations (default: xtb's, 250)")
    s.add_argument("--auto-retry", action="store_true", default=None, dest="auto_retry",
                   help="retry failed runs by the ladder: a higher electronic temperature, "
                        "a displaced start, more time (docs/retry.md)")
    s.add_argument("--cpu", type=_positive_int, help="cores (OMP_NUM_THREADS)")
    s.add_argument("--memory", help="memory limit in the cluster, e.g. 1Gi")
    s.add_argument("--priority", type=_int, help="higher runs first (-1000..1000)")
    s.add_argument("--name", help="a name (also the job id's stem); for many molecules, "
                                  "the stem of NAME_1, NAME_2, ...")
    s.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="a label copied onto the Kubernetes Job (repeatable)")
    s.add_argument("--then", choices=["opt", "sp", "hess", "ohess"],
                   help="a follow-up step started from the optimised geometry once its "
                        "parents end (docs/ensembles.md)")
    s.add_argument("--then-method", dest="then_method",
                   choices=["gfn2", "gfn1", "gfn0", "gfnff"],
                   help="the follow-up's method (default: the parent's)")
    s.add_argument("--then-for", dest="then_for", choices=["best", "all"], default="best",
                   help="best: one follow-up per molecule, on its lowest-energy completed "
                        "job (default); all: one per job")
    s.add_argument("--wait", action="store_true", help="wait for the result, showing progress")
    s.add_argument("--wait-timeout", type=_positive_float, default=None,
                   help="give up waiting after this many seconds (exit 1)")
    s.add_argument("--json", action="store_true",
                   help="one JSON line per molecule: job_id, name, status, duplicate_of")

    ls = sub.add_parser("list", help="list jobs")
    ls.add_argument("--status", type=str.upper, choices=STATUSES)
    ls.add_argument("--group", type=_group, help="only the jobs of this group")
    ls.add_argument("--json", action="store_true")

    st = sub.add_parser("status", help="counts per status, completion rate, time left")
    st.add_argument("--group", type=_group, help="one group (default: the whole store)")
    st.add_argument("--owners", action="store_true",
                    help="also running and queued jobs per owner (the whole store)")
    st.add_argument("--json", action="store_true")

    wt = sub.add_parser("wait", help="wait for jobs or a group, with live progress "
                                     "(exit 0 all COMPLETED, 1 any failed)")
    wt.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    wt.add_argument("--group", type=_group)
    wt.add_argument("--timeout", type=_positive_float, default=None,
                    help="give up after this many seconds (exit 1)")
    wt.add_argument("--interval", type=_positive_float, default=0.5, help=argparse.SUPPRESS)
    wt.add_argument("--json", action="store_true", help="a JSON summary at the end")

    ex = sub.add_parser("export", help="one row (csv, jsonl) or structure (sdf, xyz) per job")
    ex.add_argument("--group", type=_group)
    ex.add_argument("--status", type=str.upper, choices=STATUSES)
    ex.add_argument("--format", required=True, choices=["csv", "jsonl", "sdf", "xyz"])
    ex.add_argument("-o", "--output", default=None, help="a file (default: stdout)")
    ex.add_argument("--per-molecule", action="store_true", dest="per_molecule",
                    help="one row (csv, jsonl) or best geometry (sdf) per molecule: its "
                         "lowest conformer and Boltzmann averages (docs/ensembles.md)")

    sh = sub.add_parser("show", help="a job's status, placement or why it waits, result")
    sh.add_argument("job_id")
    sh.add_argument("--json", action="store_true")

    r = sub.add_parser("result", help="a completed job's result")
    r.add_argument("job_id")
    r.add_argument("--format", choices=["json", "xyz", "qcschema"], default="json")

    c = sub.add_parser("cancel", help="cancel queued or running jobs, or a whole group")
    c.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    c.add_argument("--group", type=_group)

    rt = sub.add_parser("retry", help="run FAILED (or CANCELLED) jobs again as a new attempt",
                        description="Queue FAILED jobs (and CANCELLED ones with "
                        "--include-cancelled) again, each as a new attempt of the same job; "
                        "the earlier attempt is kept in its history (docs/retry.md). Every "
                        "id is checked first; an unknown one retries nothing.")
    rt.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    rt.add_argument("--group", type=_group, help="the group's FAILED jobs")
    rt.add_argument("--error-type", dest="error_type", choices=ERROR_TYPES,
                    help="only the jobs that failed with this error type")
    rt.add_argument("--include-cancelled", action="store_true", dest="include_cancelled",
                    help="CANCELLED jobs too")

    d = sub.add_parser("delete", help="remove finished jobs from the store",
                       description="Remove finished jobs (COMPLETED, FAILED, CANCELLED): "
                       "their folders and index entries. Every id is checked first; if "
                       "one cannot be deleted, none is.")
    d.add_argument("job_ids", nargs="+", metavar="JOB_ID")

    w = sub.add_parser("worker", help="run the local worker")
    w.add_argument("--max-concurrent", type=_positive_int, dest="max_concurrent_jobs")
    w.add_argument("--poll-interval", type=_positive_float, dest="poll_interval")
    w.add_argument("--until-idle", action="store_true",
                   help="exit when nothing is queued or running")
    w.add_argument("--worker-id", dest="worker_id")
    _observability_options(w)

    sv = sub.add_parser("server", help="serve the HTTP API (the front door) over the store",
                        description="The HTTP API under /api/v1/ (docs/server.md): every "
                        "user command through the network, with tokens (`qforge token`).")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on "
                                                        "(default 127.0.0.1)")
    sv.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    sv.add_argument("--trust-proxy-header", action="store_true", dest="trust_proxy_header",
                    help="take the user from an authenticating proxy's X-Auth-Request-User "
                         "header (only behind such a proxy)")
    _observability_options(sv)

    lg = sub.add_parser("login", help="keep a server's URL and token for every command",
                        description="Writes ~/.config/qforge/profile.json (mode 0600); the "
                        "token is read from --token, QFORGE_TOKEN or stdin.")
    lg.add_argument("url", help="the server, e.g. https://qforge.example.org")
    lg.add_argument("--token", default=None, help=argparse.SUPPRESS)

    k = sub.add_parser("controller", help="run the Kubernetes controller (kopf)")
    k.add_argument("--liveness", default="http://0.0.0.0:8080/healthz",
                   help="kopf's health endpoint")
    k.add_argument("--namespace", default=None)
    k.add_argument("--max-concurrent", type=_positive_int, dest="max_concurrent_jobs")
    k.add_argument("--poll-interval", type=_positive_float, dest="poll_interval")
    _observability_options(k)

    from qforge.cli import tokens  # `qforge token ...`: its parser lives with it

    tokens.add_parser(sub)
    return p


def _port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (0..65535): {text}")
    return value


def _observability_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-port", type=_port, dest="metrics_port",
                   help="serve Prometheus metrics at http://ADDRESS:PORT/metrics "
                        "(env METRICS_PORT; 0: any free port)")
    p.add_argument("--metrics-address", dest="metrics_address",
                   help="address of the metrics endpoint (env METRICS_ADDRESS, default 0.0.0.0)")
    p.add_argument("--log-format", choices=["text", "json"], dest="log_format",
                   help="text lines, or one JSON object per line (env LOG_FORMAT)")


def _observability(args: argparse.Namespace) -> dict[str, Any]:
    return {"metrics_port": args.metrics_port, "metrics_address": args.metrics_address,
            "log_format": args.log_format}


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return Settings.from_env(None, jobs_dir=args.jobs_dir, **overrides)


def run(argv: Sequence[str] | None = None, *, exit_when_done: bool = False) -> int:
    """Run one command. `exit_when_done`: the process ends with the command (the real
    entry point, not a test calling `main([...])`), so `worker --until-idle` may skip
    the interpreter's teardown (commands.exit_now)."""
    args = build_parser().parse_args(argv)
    args.exit_when_done = exit_when_done
    cmd = args.command
    if cmd == "token":
        from qforge.cli import tokens

        return tokens.run(args, _settings(args))
    if cmd in USER_COMMANDS:
        return _user_command(args)
    from qforge.cli import commands

    if cmd == "worker":
        settings = _settings(args, max_concurrent_jobs=args.max_concurrent_jobs,
                             poll_interval=args.poll_interval, worker_id=args.worker_id,
                             **_observability(args))
        return commands.worker(args, settings)
    if cmd == "controller":
        settings = _settings(args, max_concurrent_jobs=args.max_concurrent_jobs,
                             poll_interval=args.poll_interval, namespace=args.namespace,
                             **_observability(args))
        return commands.controller(args, settings)
    if cmd == "server":
        from qforge.server.run import run_server

        settings = _settings(args, **_observability(args))
        return run_server(settings, host=args.host, port=args.port,
                          trust_proxy_header=args.trust_proxy_header)
    if cmd == "login":
        from qforge.client.profile import login

        return login(args.url, token=args.token)
    raise UsageError(f"unknown command {cmd}")  # pragma: no cover - argparse guards


# The commands a user runs: each goes through the service layer, on the store mounted here
# or through a server (QFORGE_SERVER / `qforge login`), with the same output and exit codes.
USER_COMMANDS = frozenset({"submit", "list", "status", "wait", "export", "cancel", "delete",
                           "show", "result", "retry"})


def _user_command(args: argparse.Namespace) -> int:
    from qforge.cli import campaign, commands
    from qforge.cli.door import manager_for

    cmd = args.command
    if cmd in ("wait", "cancel", "retry") and bool(args.job_ids) == (args.group is not None):
        raise UsageError(f"{cmd}: give job ids or --group, not both (nor neither)")
    settings = _settings(args)
    manager = manager_for(args.jobs_dir, settings)
    if cmd == "submit":
        from qforge.cli import submit

        return submit.submit(args, settings, manager)
    handlers = {"list": campaign.list_jobs, "status": campaign.status, "wait": campaign.wait,
                "export": campaign.export_jobs, "delete": campaign.delete,
                "cancel": campaign.cancel, "retry": campaign.retry, "show": commands.show,
                "result": commands.result}
    return handlers[cmd](args, manager)


def _fail(code: int, message: str) -> int:
    print(f"qforge: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    from qforge.service.problems import EXIT_BUG, problem_of

    try:
        return run(argv, exit_when_done=argv is None)
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        problem = problem_of(exc)
        if problem is not None:
            return _fail(problem.exit_code, problem.detail)
        if isinstance(exc, OSError):
            where = f" ({exc.filename})" if exc.filename else ""
            return _fail(EXIT_USAGE, f"{exc.strerror or exc}{where}")
        if os.environ.get("QFORGE_DEBUG"):
            raise
        return _fail(EXIT_BUG, f"internal error: {type(exc).__name__}: {exc} "
                               "(set QFORGE_DEBUG=1 for details)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
