"""The command-line options of issue 14 (``--format``, ``--sign``/``--sign-cert``, ``--redact``) and the
``verify`` command, apart from what carries them out (``publish.py``): building the parser imports only
argparse, so ``dcsaudit --version`` and ``--help`` stay fast (issue 16)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dcsaudit.export import DEFAULT_FORMATS, FORMATS


def add_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--format", dest="formats", default=",".join(DEFAULT_FORMATS), metavar="LIST",
                    help=f"comma-separated outputs to write: {', '.join(FORMATS)} (default {','.join(DEFAULT_FORMATS)})")
    sp.add_argument("--sign", type=Path, metavar="KEYFILE",
                    help="write manifest.json (SHA-256 of every output) and its detached signature manifest.sig, "
                    "signed with this PEM private key (Ed25519, RSA or EC; a certificate may follow the key)")
    sp.add_argument("--sign-cert", type=Path, metavar="CERTFILE", help="the signer's X.509 certificate (PEM)")
    sp.add_argument("--redact", action="store_true",
                    help="replace every IP address, host name and AE title of the deployment by placeholders "
                    "(host-1, AE-1) in every output, for publication; the config's `redact:` list adds strings")


def add_verify_command(sub: Any) -> None:
    v = sub.add_parser("verify", help="check a signed output directory against its manifest.json and manifest.sig",
                       description="Exit 0: every file the manifest lists matches (and, with a key, the signature "
                       "is valid under it); 1: a file differs or is missing, or the signature does not verify; "
                       "2: usage error (no manifest, unreadable key).")
    v.add_argument("dir", type=Path, help="the output directory holding manifest.json")
    key = v.add_mutually_exclusive_group()
    key.add_argument("--public-key", type=Path, metavar="FILE", help="the signer's PEM public key")
    key.add_argument("--cert", type=Path, metavar="FILE", help="the signer's X.509 certificate (PEM or DER)")
