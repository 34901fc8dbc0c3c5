"""Benchmark: the command a user runs, `dcsaudit scan`, end to end, against the sslyze CLI, nmap's
ssl-enum-ciphers script and (optionally) testssl.sh on the same endpoints (issue 16).

Scenarios: a modern `openssl s_server`, a legacy one (TLS 1.0, every suite), Orthanc's DICOM-TLS port
(optional client certificate), and all three in one run. Every measurement gets fresh peers; the tools
are interleaved round by round; min / median / max are printed and written into docs/benchmarks.md
(between the e2e-bench markers). Loopback only; every command has a time limit. Not a test.

    .venv/bin/python -m benchmarks.e2e_bench [--rounds 3] [--testssl] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.peers, when run as a script

from tests.peers.tls_peers import RsaPKI, openssl_server, orthanc_tls

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
DCSAUDIT = str(ROOT / ".venv" / "bin" / "dcsaudit")
PROJECT_DIRS = ("dcsaudit", "checks", "configs", "templates")
SSLYZE = str(ROOT / ".venv" / "bin" / "sslyze")
# The sslyze commands that cover what `dcsaudit scan` measures on a TLS port (as in tls_bench.py).
SSLYZE_COMMANDS = ["--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3", "--certinfo",
                   "--elliptic_curves", "--heartbleed", "--openssl_ccs", "--reneg", "--compression",
                   "--fallback", "--ems"]
LIMIT = 120.0
SCENARIOS = ("modern", "legacy", "orthanc", "all three")
BEGIN, END = "<!-- e2e-bench: begin -->", "<!-- e2e-bench: end -->"
STAGE_LINE = re.compile(r"stage (\S+): ([0-9.]+) s")
stage_times: dict[str, list[float]] = {}  # stage -> seconds, over every `dcsaudit scan` with vulnerabilities on


@contextmanager
def peers(pki: RsaPKI, scenario: str) -> Iterator[list[int]]:
    with ExitStack() as stack:
        ports: list[int] = []
        if scenario in ("modern", "all three"):
            ports.append(stack.enter_context(openssl_server(pki)))
        if scenario in ("legacy", "all three"):
            ports.append(stack.enter_context(openssl_server(pki, ciphers="ALL:@SECLEVEL=0", versions=("-tls1",))))
        if scenario in ("orthanc", "all three"):
            ports.append(stack.enter_context(orthanc_tls(pki, remote_certificate_required=False)))
        yield ports


def timed(cmd: list[str], timeout: float = LIMIT) -> tuple[float, int | None]:
    t = time.perf_counter()
    try:
        rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout,
                            check=False).returncode
    except subprocess.TimeoutExpired:
        return float("inf"), None
    return time.perf_counter() - t, rc


def dcsaudit_scan(pki: RsaPKI, ports: list[int], vulns: bool, work: Path) -> tuple[float, dict[int, str]]:
    cfg = work / "deployment.yaml"
    cfg.write_text(yaml.safe_dump({
        "deployment": "e2e bench", "hosts": [{"address": LOOPBACK, "tcp_ports": ports, "udp_ports": []}],
        "credentials": {"ca_file": str(pki.ca_file)}, "scan": {"tls": {"vulnerabilities": vulns}},
    }), encoding="utf-8")
    out, logfile = work / "out", work / "scan.log"
    shutil.rmtree(out, ignore_errors=True)
    dt, rc = timed([DCSAUDIT, "scan", str(cfg), "--out", str(out), "-q", "-v", "--log-file", str(logfile)])
    services: dict[int, str] = {}
    if rc in (0, 1) and (out / "report.json").exists():
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        services = {e["port"]: e["service"] for e in report["endpoints"]}
    if vulns and logfile.exists():  # where the time went: each stage's own log line
        for name, seconds in STAGE_LINE.findall(logfile.read_text(encoding="utf-8")):
            stage_times.setdefault(name, []).append(float(seconds))
        stage_times.setdefault("(whole command)", []).append(dt)
    return dt, services


def tools(pki: RsaPKI, testssl: bool) -> dict[str, Callable[[list[int], Path], float]]:
    def ours(vulns: bool) -> Callable[[list[int], Path], float]:
        def run(ports: list[int], work: Path) -> float:
            dt, services = dcsaudit_scan(pki, ports, vulns, work)
            if sorted(services) != sorted(ports) or any(s not in ("tls", "https", "dicom-tls") for s in services.values()):
                print(f"  dcsaudit identified {services}", file=sys.stderr)
            return dt
        return run

    out: dict[str, Callable[[list[int], Path], float]] = {
        "dcsaudit scan": ours(True),
        "dcsaudit scan, vulnerabilities off": ours(False),
        "sslyze CLI": lambda ports, _w: timed([SSLYZE, *SSLYZE_COMMANDS, "--quiet",
                                               *[f"{LOOPBACK}:{p}" for p in ports]])[0],
        "nmap ssl-enum-ciphers": lambda ports, _w: timed(["nmap", "-n", "-Pn", "-sT", "--script", "ssl-enum-ciphers",
                                                          "-p", ",".join(map(str, ports)), LOOPBACK])[0],
    }
    exe = shutil.which("testssl") or shutil.which("testssl.sh")
    if testssl and exe:
        # testssl.sh takes one target; "all three" is the sum of its runs one after another.
        out["testssl.sh"] = lambda ports, _w: sum(
            timed([exe, "--quiet", "--warnings", "off", "--color", "0", "-p", "-e", "-f", "-S", "-H", "-I",
                   f"{LOOPBACK}:{p}"], 600)[0] for p in ports)
    return out


def _cell(v: list[float]) -> str:
    if not v:
        return "—"
    if any(x == float("inf") for x in v):
        return f"> {LIMIT:.0f} s (cut)"
    return f"{statistics.median(v):.2f} s ({min(v):.2f}–{max(v):.2f})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--testssl", action="store_true", help="also time testssl.sh (about a minute per endpoint)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rounds = max(1, min(args.rounds, 15))
    # Bytecode for the project's modules, as an install has it (scripts/setup.sh does the same): an edited
    # tree under PYTHONDONTWRITEBYTECODE would otherwise compile them again in every measured run (≈ 0.25 s).
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(ROOT / d) for d in PROJECT_DIRS)],
                   stdout=subprocess.DEVNULL, check=False)
    tmp = Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    pki = RsaPKI(tmp)
    measure = tools(pki, args.testssl)
    fig: dict[tuple[str, str], list[float]] = {(s, t): [] for s in SCENARIOS for t in measure}
    for r in range(rounds):
        for scenario in SCENARIOS:
            for name, fn in measure.items():
                if name == "testssl.sh" and r > 0:
                    continue  # once is enough for a tool that takes minutes
                with peers(pki, scenario) as ports:
                    work = Path(tempfile.mkdtemp(dir=tmp))
                    fig[(scenario, name)].append(fn(ports, work))
                print(f"round {r + 1} {scenario:9} {name:36} {fig[(scenario, name)][-1]:.2f} s", file=sys.stderr,
                      flush=True)
    date = time.strftime("%Y-%m-%d")
    lines = [BEGIN, "", f"## `dcsaudit scan` end to end vs sslyze, nmap, testssl.sh (issue 16), {date}", "",
             f"`benchmarks/e2e_bench.py --rounds {rounds}{' --testssl' if args.testssl else ''}`: the CLI as a user "
             "runs it (default settings, nmap inventory, identification, every stage that applies, report and "
             "annex written) against the sslyze CLI (`" + " ".join(SSLYZE_COMMANDS) + "`), `nmap -sT --script "
             "ssl-enum-ciphers` and testssl.sh (`-p -e -f -S -H -I`, one target at a time), fresh peers for "
             "every measurement, tools interleaved per round. Median (min–max) of the rounds, wall time.", "",
             "| endpoints | " + " | ".join(measure) + " |", "|---|" + "---|" * len(measure)]
    for scenario in SCENARIOS:
        label = {"modern": "modern `openssl s_server` (-www)", "legacy": "legacy `openssl s_server` (-tls1, ALL:@SECLEVEL=0)",
                 "orthanc": "Orthanc DICOM-TLS (optional client certificate)",
                 "all three": "all three in one run"}[scenario]
        lines.append(f"| {label} | " + " | ".join(_cell(fig[(scenario, t)]) for t in measure) + " |")
    lines += ["", "Where `dcsaudit scan` (vulnerabilities on) spent its time, all scenarios and rounds together "
              "(median (min–max) of each stage's own log line; the rest of the whole command is start-up, "
              "checks, annex and writing the outputs):", "", "| stage | time |", "|---|---|"]
    lines += [f"| {name} | {_cell(v)} |" for name, v in stage_times.items()]
    lines += ["", END]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        doc = ROOT / "docs" / "benchmarks.md"
        current = doc.read_text(encoding="utf-8")
        if BEGIN in current and END in current:
            current = current[:current.index(BEGIN)] + text + current[current.index(END) + len(END):]
        else:
            current = current.rstrip("\n") + "\n\n" + text + "\n"
        doc.write_text(current, encoding="utf-8")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
