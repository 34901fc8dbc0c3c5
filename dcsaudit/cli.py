"""Command line: ``dcsaudit scan|demo|listen|schema``.

Exit status (for schedulers and CI):
  0  audit completed and the policy passed
  1  audit completed with policy failures
  2  usage or config error, found before any packet is sent (one line names the field)
  3  the audit could not run (internal failure, output not writable, demo could not start)
  4  interrupted (SIGTERM or SIGINT): report.json holds what finished, with run.complete false
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from dcsaudit import __version__

# Heavy modules (pydantic models, config, asyncio, the runner and its sslyze/annex imports) are
# imported where a command needs them: `dcsaudit --version` and `--help` stay fast (issue 16).
if TYPE_CHECKING:
    from dcsaudit.export.publish import Publish
    from dcsaudit.history.commands import HistoryTarget
    from dcsaudit.models.report import Report
    from dcsaudit.policy import Policy

EXIT_OK, EXIT_POLICY_FAILED, EXIT_USAGE, EXIT_CANNOT_RUN, EXIT_INTERRUPTED = 0, 1, 2, 3, 4
EXIT_STATUSES = """exit status:
  0  audit completed and the policy passed
  1  audit completed with policy failures (the gating check ids are listed on stderr)
  2  usage or config error, found before any packet is sent (one line names the field)
  3  the audit could not run (internal failure, outputs not writable at the end)
  4  interrupted by SIGTERM or SIGINT: report.json has run.complete false and the reason
     (a second signal stops at once; outputs are replaced atomically, never left truncated)"""
log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 too; keep one clear line
        self.print_usage(sys.stderr)
        print(f"dcsaudit: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    from dcsaudit.export import options as export  # argparse options only (issue 14)

    p = _Parser(prog="dcsaudit", description="Security and configuration audit of DICOM deployments "
                "(fills PS3.2 Annex N sections N.6, N.8, N.11 from what is observed on the network).",
                epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter)
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

    def output_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--force", action="store_true", help="overwrite a previous report.json in --out")
        sp.add_argument("--out-dir-per-run", action="store_true",
                        help="write into a new timestamped sub-directory of --out (keeps every run)")
        export.add_options(sp)  # --format, --sign, --sign-cert, --redact (issue 14)

    scan = sub.add_parser("scan", help="audit the deployment described by CONFIG", epilog=EXIT_STATUSES,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    scan.add_argument("config", type=Path, help="deployment config (YAML); see configs/example-deployment.yaml")
    scan.add_argument("--targets", type=Path, metavar="FILE",
                      help="more hosts: one address, host name or CIDR range a line, # comments (default ports)")
    scan.add_argument("--allow-unresolved", action="store_true",
                      help="a host name that does not resolve becomes an error finding (it gates) instead of "
                      "a config error")
    common(scan, "dcsaudit-out")
    output_options(scan)
    from dcsaudit.history.options import add_commands, add_run_options  # issue 13 (history store, CI)

    add_run_options(scan, "dcsaudit-history.sqlite beside --out")

    demo = sub.add_parser("demo", help="start the built-in demo deployment on loopback and audit it")
    common(demo, "dcsaudit-demo-out")
    output_options(demo)
    add_run_options(demo, "none")

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
    listen.add_argument("--tls-cert-tests", action="store_true",
                        help="serve, per peer, the good certificate then defective ones (unknown CA, self-signed, "
                        "expired, wrong host name), one per TLS connection, and record whether the product goes on")
    listen.add_argument("--tls-cert-signing-ca", type=Path, help="with --tls-cert-tests: a CA the product trusts "
                        "(PEM) that signs the expired and wrong-host certificates, so each has only that defect")
    listen.add_argument("--tls-cert-signing-key", type=Path, help="the unencrypted PEM key of --tls-cert-signing-ca")
    listen.add_argument("--duration", type=float, default=60.0, help="seconds to listen (default 60)")
    common(listen, "dcsaudit-listen-out")
    export.add_options(listen)  # --format, --sign, --sign-cert, --redact, as scan (issue 14)

    logging_options(sub.add_parser("schema", help="print the JSON Schema of report.json"))
    decl = sub.add_parser("declarations", help="list every key the `declared:` section accepts, or (--yaml) "
                          "print a commented YAML skeleton of the whole section to fill in")
    decl.add_argument("--yaml", action="store_true", help="a commented `declared:` skeleton instead of a key list")
    logging_options(decl)
    add_commands(sub, logging_options)
    export.add_verify_command(sub)  # issue 14
    logging_options(sub.choices["verify"])
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
    if not report.run.complete:  # a partial report never passes, and never reads as an ordinary failure
        return EXIT_INTERRUPTED
    return EXIT_POLICY_FAILED if any(policy.is_failing(f) for f in report.findings) else EXIT_OK


def _gating_summary(report: Report, policy: Policy) -> list[str]:
    """One line per gating check id with its failing targets (at most three shown)."""
    by_check: dict[str, list[str]] = {}
    for f in report.findings:
        if policy.is_failing(f):
            by_check.setdefault(f.check_id, []).append(f.target)
    lines = []
    for check_id, targets in sorted(by_check.items()):
        more = f", … (+{len(targets) - 3})" if len(targets) > 3 else ""
        lines.append(f"  gating {check_id}: {', '.join(targets[:3])}{more}")
    return lines


def finish(report: Report, policy: Policy, out: Path, quiet: bool, history: HistoryTarget | None = None,
           publish: Publish | None = None) -> int:
    from dcsaudit.export.publish import Publish
    from dcsaudit.output import write_outputs

    publish = publish or Publish()
    status = exit_status(report, policy)
    report = report.model_copy(update={"run": report.run.model_copy(update={"exit_status": status})})
    report = publish.prepare(report)  # --redact: before any output is rendered from it
    try:
        formats = publish.formats
        if report.run.interrupted and "pdf" in formats:  # a document to publish: not of a stopped run
            formats = tuple(f for f in formats if f != "pdf")
            print("dcsaudit: interrupted: annex.pdf not written (the other outputs are)", file=sys.stderr)
        paths = write_outputs(report, out, formats)
        paths |= publish.seal(report, out, paths)  # --sign: manifest.json + manifest.sig over them
    except OSError as exc:
        print(f"dcsaudit: cannot write outputs to {out}: {exc.strerror}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if report.run.interrupted:  # said even with --quiet: a scheduler's log must show why
        print(f"dcsaudit: interrupted ({report.run.interrupted}); partial report written, run.complete false",
              file=sys.stderr)
    if not quiet:
        fails = [f for f in report.findings if f.status in ("fail", "error")]
        gating = [f for f in fails if policy.is_failing(f)]
        unreachable = f", {len(report.run.unreachable_hosts)} unreachable host(s)" if report.run.hosts else ""
        print(f"dcsaudit: {report.run.hosts or len({e.host for e in report.endpoints})} host(s){unreachable}, "
              f"{len(report.endpoints)} endpoint(s), {len(report.findings)} finding(s), "
              f"{len(fails)} failed or errored, {len(gating)} gating (policy {policy.name})", file=sys.stderr)
        for line in _gating_summary(report, policy):
            print(line, file=sys.stderr)
        for name, path in paths.items():
            print(f"  {name}: {path}", file=sys.stderr)
    if history is not None and not history.store(report, out, quiet):
        return EXIT_CANNOT_RUN  # the history store (issue 13): a run it cannot take is said, and exits 3
    return status


def _cmd_scan(args: argparse.Namespace) -> int:
    from dcsaudit.config import load_config
    from dcsaudit.export.publish import from_args
    from dcsaudit.history import commands as history
    from dcsaudit.policy import load_policy
    from dcsaudit.preflight import Options, preflight
    from dcsaudit.runner import run_audit_blocking

    config = load_config(args.config)
    policy = load_policy(args.policy or config.policy, base_dir=args.config.parent)
    suppressions = history.load_run_suppressions(args)
    # Everything that can be wrong with the config, the files it names and --out, before any packet.
    ready = preflight(config, policy, Options(
        out=args.out, force=args.force, out_dir_per_run=args.out_dir_per_run,
        allow_unresolved=args.allow_unresolved, targets_file=args.targets, source=str(args.config)))
    assert ready.out is not None
    publish = from_args(args, ready.config)  # a bad --format or --sign key: exit 2 before any packet
    store = history.target(args, args.out, args.out_dir_per_run, True, notify=config.notify)
    if store is not None and not history.notifies(store.notify):  # its imports overlap the network waits
        import dataclasses

        from dcsaudit.history.worker import start

        store = dataclasses.replace(store, worker=start())
    try:
        with progress_reporter(args.quiet) as progress:
            report = run_audit_blocking(ready.config, policy, command="scan", progress=progress,
                                        unresolved=ready.unresolved)
        report, policy = history.adjust(report, policy, args, suppressions)
        return finish(report, policy, ready.out, args.quiet, history=store, publish=publish)
    finally:
        if store is not None:
            store.close()


def _cmd_demo(args: argparse.Namespace) -> int:
    from dcsaudit.demo import run_demo
    from dcsaudit.export.publish import from_args
    from dcsaudit.history import commands as history
    from dcsaudit.preflight import Options, check_out

    suppressions = history.load_run_suppressions(args)
    out = check_out(Options(out=args.out, force=args.force, out_dir_per_run=args.out_dir_per_run, command="demo"))
    assert out is not None
    publish = from_args(args)
    with progress_reporter(args.quiet) as progress:
        report, policy = run_demo(progress=progress, policy_name=args.policy)
    report, policy = history.adjust(report, policy, args, suppressions)
    return finish(report, policy, out, args.quiet,
                  history=history.target(args, args.out, args.out_dir_per_run, False),
                  publish=publish)


def _cmd_listen(args: argparse.Namespace) -> int:
    from dcsaudit.config import ConfigError
    from dcsaudit.listen_cmd import run_listen
    from dcsaudit.policy import load_policy

    if not any((args.dicom_port, args.dicom_tls_port, args.syslog_tls_port, args.syslog_udp_port)):
        raise ConfigError("listen: give at least one of --dicom-port, --dicom-tls-port, --syslog-tls-port, --syslog-udp-port")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("listen: --tls-cert and --tls-key go together")
    if not 0 < args.duration <= 7 * 24 * 3600:
        raise ConfigError("listen: --duration must be between 0 and one week (seconds)")
    policy = load_policy(args.policy or "default")
    from dcsaudit.export.publish import from_args

    publish = from_args(args)  # a bad --format or --sign key: exit 2 before anything listens
    with progress_reporter(args.quiet) as progress:
        report = run_listen(args, policy, progress)
    return finish(report, policy, args.out, args.quiet, publish=publish)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM outside the audit (preflight, writing) acts like Ctrl-C: exit 4, not 143. During the
    audit the runner's own handlers take over and write a partial report."""
    import signal

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_without_waiting_for_probes(status: int) -> None:
    """End the process now with ``status``, without the interpreter's finalisation.

    After an interruption, probe threads that cannot be cancelled (nmap, sslyze, pynetdicom, a
    blocked preflight read) may still run, and the interpreter would join them at exit — where a
    pending interrupt turns the exit status into a signal death (seen once in CI as -2). The outputs
    are on disk: end now, always with ``status``."""
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dcsaudit import logs
    from dcsaudit.config import ConfigError

    try:
        logs.setup(args.verbose, args.log_file)
    except OSError as exc:
        print(f"dcsaudit: config error: --log-file {args.log_file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    log.info("dcsaudit %s %s", __version__, args.command)
    try:
        if args.command == "schema":
            import json

            from dcsaudit.output import report_schema

            print(json.dumps(report_schema(), indent=2))
            return EXIT_OK
        if args.command == "declarations":
            from dcsaudit.annex import declarations

            if args.yaml:
                print(declarations.skeleton_yaml(), end="")
            else:
                for tid, key in declarations.valid_keys():
                    print(f"{tid}\t{key}")
            return EXIT_OK
        if args.command == "verify":  # issue 14: the signed evidence bundle
            from dcsaudit.export.publish import run_verify

            return run_verify(args)
        if args.command in ("history", "diff"):
            from dcsaudit.history import commands as history

            return history.cmd_history(args) if args.command == "history" else history.cmd_diff(args)
        handler = {"scan": _cmd_scan, "demo": _cmd_demo, "listen": _cmd_listen}[args.command]
        with _sigterm_interrupts():
            status = handler(args)
        if getattr(args, "exit_zero", False) and status == EXIT_POLICY_FAILED:
            status = EXIT_OK  # --exit-zero: report.json still records exit_status 1
        if status == EXIT_INTERRUPTED or argv is None:
            # From the command line (argv None) the outputs are on disk and nothing is left to do: the
            # interpreter's own finalisation (freeing every model, joining idle probe threads) took
            # ≈ 0.6 s of a 3 s scan (issue 16). Called in-process (tests, argv given), return normally.
            _exit_without_waiting_for_probes(status)
        return status
    except ConfigError as exc:
        print(f"dcsaudit: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # SIGINT, or SIGTERM, outside the audit itself (which writes a partial report)
        print("dcsaudit: interrupted before the audit ran or while writing; no new outputs", file=sys.stderr)
        _exit_without_waiting_for_probes(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the audit itself failed: say so in one line, exit 3
        log.debug("the audit could not run", exc_info=True)
        print(f"dcsaudit: the audit could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN


if __name__ == "__main__":
    sys.exit(main())
