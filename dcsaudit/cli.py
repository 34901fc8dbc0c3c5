"""Command line: ``dcsaudit scan|demo|listen|schema``.

Exit status (for schedulers and CI):
  0  audit completed and the policy passed
  1  audit completed with policy failures
  2  usage or config error
  3  the audit could not run (internal failure, output not writable, demo could not start)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from dcsaudit import __version__, logs
from dcsaudit.config import ConfigError, load_config
from dcsaudit.models.report import Report
from dcsaudit.policy import Policy, load_policy

EXIT_OK, EXIT_POLICY_FAILED, EXIT_USAGE, EXIT_CANNOT_RUN = 0, 1, 2, 3
log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 too; keep one clear line
        self.print_usage(sys.stderr)
        print(f"dcsaudit: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dcsaudit", description="Security and configuration audit of DICOM deployments "
                "(fills PS3.2 Annex N sections N.6, N.8, N.11 from what is observed on the network).")
    p.add_argument("--version", action="version", version=f"dcsaudit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def logging_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what each stage did and how long it took (-vv: every probe)")
        sp.add_argument("--log-file", type=Path, help="also write the log here (at least -v detail); never secrets")

    def common(sp: argparse.ArgumentParser, default_out: str) -> None:
        sp.add_argument("--out", type=Path, default=Path(default_out), help=f"output directory (default {default_out})")
        sp.add_argument("--policy", help="policy name (configs/policy-NAME.yaml) or file; overrides the config")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        logging_options(sp)

    scan = sub.add_parser("scan", help="audit the deployment described by CONFIG")
    scan.add_argument("config", type=Path, help="deployment config (YAML); see configs/example-deployment.yaml")
    common(scan, "dcsaudit-out")

    demo = sub.add_parser("demo", help="start the built-in demo deployment on loopback and audit it")
    common(demo, "dcsaudit-demo-out")

    listen = sub.add_parser("listen", help="act as SCP and syslog collector; record what the product sends")
    listen.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    listen.add_argument("--dicom-port", type=int, help="plain DICOM port")
    listen.add_argument("--dicom-tls-port", type=int, help="DICOM over TLS port")
    listen.add_argument("--syslog-tls-port", type=int, help="syslog over TLS collector port (RFC 5425)")
    listen.add_argument("--syslog-udp-port", type=int, help="syslog over UDP collector port (RFC 5426)")
    listen.add_argument("--tls-cert", type=Path)
    listen.add_argument("--tls-key", type=Path)
    listen.add_argument("--tls-ca", type=Path, help="CA used to validate client certificates")
    listen.add_argument("--ae-title", default="DCSAUDIT")
    listen.add_argument("--store-dir", type=Path, help="keep received C-STORE data here (default: discard)")
    listen.add_argument("--duration", type=float, default=60.0, help="seconds to listen (default 60)")
    common(listen, "dcsaudit-listen-out")

    logging_options(sub.add_parser("schema", help="print the JSON Schema of report.json"))
    return p


@contextmanager
def progress_reporter(quiet: bool) -> Iterator[Callable[[str], None]]:
    """A live status line on a terminal; silent when stderr is not a TTY or with --quiet."""
    if quiet or not sys.stderr.isatty():
        yield lambda _msg: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, log_path=False)
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def update(msg: str) -> None:
            bar.update(task, description=msg)
            console.log(msg)

        yield update


def exit_status(report: Report, policy: Policy) -> int:
    return EXIT_POLICY_FAILED if any(policy.is_failing(f) for f in report.findings) else EXIT_OK


def finish(report: Report, policy: Policy, out: Path, quiet: bool) -> int:
    from dcsaudit.output import write_outputs

    status = exit_status(report, policy)
    report = report.model_copy(update={"run": report.run.model_copy(update={"exit_status": status})})
    try:
        paths = write_outputs(report, out)
    except OSError as exc:
        print(f"dcsaudit: cannot write outputs to {out}: {exc.strerror}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if not quiet:
        fails = [f for f in report.findings if f.status in ("fail", "error")]
        gating = [f for f in fails if policy.is_failing(f)]
        print(f"dcsaudit: {len(report.endpoints)} endpoint(s), {len(report.findings)} finding(s), "
              f"{len(fails)} failed or errored, {len(gating)} gating (policy {policy.name})", file=sys.stderr)
        for name, path in paths.items():
            print(f"  {name}: {path}", file=sys.stderr)
    return status


def _cmd_scan(args: argparse.Namespace) -> int:
    from dcsaudit.runner import run_audit

    config = load_config(args.config)
    policy = load_policy(args.policy or config.policy, base_dir=args.config.parent)
    with progress_reporter(args.quiet) as progress:
        report = asyncio.run(run_audit(config, policy, command="scan", progress=progress))
    return finish(report, policy, args.out, args.quiet)


def _cmd_demo(args: argparse.Namespace) -> int:
    from dcsaudit.demo import run_demo

    with progress_reporter(args.quiet) as progress:
        report, policy = run_demo(progress=progress, policy_name=args.policy)
    return finish(report, policy, args.out, args.quiet)


def _cmd_listen(args: argparse.Namespace) -> int:
    from dcsaudit.listen_cmd import run_listen

    if not any((args.dicom_port, args.dicom_tls_port, args.syslog_tls_port, args.syslog_udp_port)):
        raise ConfigError("listen: give at least one of --dicom-port, --dicom-tls-port, --syslog-tls-port, --syslog-udp-port")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("listen: --tls-cert and --tls-key go together")
    if not 0 < args.duration <= 7 * 24 * 3600:
        raise ConfigError("listen: --duration must be between 0 and one week (seconds)")
    policy = load_policy(args.policy or "default")
    with progress_reporter(args.quiet) as progress:
        report = run_listen(args, policy, progress)
    return finish(report, policy, args.out, args.quiet)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        logs.setup(args.verbose, args.log_file)
    except OSError as exc:
        print(f"dcsaudit: config error: --log-file {args.log_file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    log.info("dcsaudit %s %s", __version__, args.command)
    try:
        if args.command == "schema":
            from dcsaudit.output import report_schema

            print(json.dumps(report_schema(), indent=2))
            return EXIT_OK
        handler = {"scan": _cmd_scan, "demo": _cmd_demo, "listen": _cmd_listen}[args.command]
        return handler(args)
    except ConfigError as exc:
        print(f"dcsaudit: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dcsaudit: interrupted", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except Exception as exc:  # the audit itself failed: say so in one line, exit 3
        log.debug("the audit could not run", exc_info=True)
        print(f"dcsaudit: the audit could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN


if __name__ == "__main__":
    sys.exit(main())
