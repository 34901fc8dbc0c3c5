"""Enumeration by elimination with raw ClientHellos: versions, suites in order, groups, signature schemes.

Method (the one nmap ssl-enum-ciphers and testssl.sh use, extended to order, groups and signatures):
offer a set, note what the server picks, remove it, offer again until the server refuses. The picks
come out in the server's preference order if it has one; offering the accepted list reversed tells
server order (same first pick) from client order (our first pick). Suites are offered in chunks so a
ClientHello stays small (some servers choke on very large hellos). Groups and signature schemes are
tested one per hello (in parallel), then ordered by elimination; on an ECDSA-only TLS 1.2 server each hello
also offers the certificate's curve, which OpenSSL needs to use the certificate at all.

Every probe holds one connection slot of the shared limiter (dcsaudit/limits.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dcsaudit.probes.tls import certificate, wire
from dcsaudit.probes.tls.engine import Outcome
from dcsaudit.probes.tls.tls13 import KEYED_GROUPS, KeyShare
from dcsaudit.rules.tls_suites import (
    EC_GROUPS,
    GROUP_CODES,
    SIGNATURE_SCHEMES,
    TLS13_GROUPS,
    TLS13_SIGNATURE_SCHEMES,
    VERSION_CODES,
    cipher_suites,
    group_name,
    signature_name,
    suite_name,
)

Probe = Callable[..., Awaitable[Outcome]]
Order = Literal["server", "client", "unknown"]
CHUNK = 96
ALL_GROUPS_12 = list(dict.fromkeys([*EC_GROUPS, GROUP_CODES["x25519"], GROUP_CODES["x448"], 256, 257, 258, 259, 260]))
SIGALGS_12 = [c for c in SIGNATURE_SCHEMES]
PROTO_RANK = {"SSLv3": 0, "TLSv1.0": 1, "TLSv1.1": 2, "TLSv1.2": 3, "TLSv1.3": 4}
SSLV2_KINDS = [c for c in cipher_suites() if c > 0xFFFF]
ALERT_INAPPROPRIATE_FALLBACK = 86  # RFC 7507 §2


def suites_for(version: str) -> list[int]:
    """Every known suite a server could pick in ``version`` (defined by that version or earlier)."""
    rank = PROTO_RANK[version]
    if version == "TLSv1.3":
        return [c for c, s in cipher_suites().items() if s.tls13]
    return [c for c, s in cipher_suites().items()
            if not s.sslv2 and not s.tls13 and PROTO_RANK.get(s.protocol, 9) <= rank]


@dataclass
class VersionResult:
    accepted: bool = False
    suites: list[int] = field(default_factory=list)
    order: Order = "unknown"
    evidence: list[Outcome] = field(default_factory=list)
    note: str = ""
    order_incomplete: bool = False  # a hello failed while ranking accepted suites: order stays "unknown"


@dataclass
class RawFindings:
    versions: dict[str, VersionResult] = field(default_factory=dict)
    sslv2_kinds: list[int] = field(default_factory=list)
    groups12: list[str] = field(default_factory=list)
    groups12_order: Order = "unknown"
    dhe_bits: int | None = None
    groups13: list[str] = field(default_factory=list)
    groups13_order: Order = "unknown"
    sigalgs12: list[str] = field(default_factory=list)
    sigalgs12_order: Order = "unknown"
    sigalgs13: list[str] = field(default_factory=list)
    sigalgs13_order: Order = "unknown"
    prefers_tls13: bool | None = None
    fallback_scsv: bool | None = None
    fallback_scsv_status: Literal["supported", "not_supported", "not_applicable", "undetermined"] | None = None
    fallback_scsv_detail: str | None = None
    notes: list[str] = field(default_factory=list)  # why a list may be incomplete (beyond timeouts)
    compression: bool | None = None
    renegotiation_info: bool | None = None
    extended_master_secret: bool | None = None
    encrypt_then_mac: bool | None = None
    certificates: list[bytes] = field(default_factory=list)
    certificate_request: bool | None = None
    client_auth_tls13: Literal["required", "optional"] | None = None
    first_failure: Outcome | None = None
    probes: int = 0


class Enumerator:
    """Runs the raw probes of one endpoint. ``probe`` wraps ``engine.exchange`` with limits and timeouts."""

    def __init__(self, probe: Probe, sni: str | None) -> None:
        self._probe = probe
        self.sni = sni
        self.f = RawFindings()

    async def _ask(self, spec: wire.HelloSpec, **kw: object) -> Outcome:
        self.f.probes += 1
        keys: dict[int, KeyShare] | None = None
        if spec.version >= 0x0304 and spec.key_shares == [] and kw.pop("with_keys", True):
            keys = {g: KeyShare(g) for g in spec.groups if g in KEYED_GROUPS[:2]}
            spec.key_shares = [(g, k.public) for g, k in keys.items()]
        hello = wire.build_client_hello(spec)
        out = await self._probe(hello, key_shares=keys, **kw)
        if not out.accepted and out.kind not in ("alert", "closed", "reset") and self.f.first_failure is None:
            self.f.first_failure = out
        return out

    def _spec(self, version: str, suites: Sequence[int], **kw: Any) -> wire.HelloSpec:
        code = VERSION_CODES[version]
        groups = kw.pop("groups", None)
        if groups is None:
            groups = [29, 23, 24, 25, 30, 256, 257] if code >= 0x0304 else ALL_GROUPS_12
        sig = kw.pop("signature_algorithms", None)
        if sig is None:
            sig = list(TLS13_SIGNATURE_SCHEMES) if code >= 0x0304 else SIGALGS_12
        return wire.HelloSpec(version=code, suites=list(suites), groups=list(groups),
                              signature_algorithms=list(sig), sni=self.sni,
                              extensions=version != "SSLv3", **kw)

    def _picked(self, out: Outcome, version: str, offered: Sequence[int]) -> int | None:
        sh = out.server_hello
        if not out.accepted or sh is None or sh.version != VERSION_CODES[version]:
            return None
        return sh.cipher_suite if sh.cipher_suite in offered else None

    async def _eliminate(self, version: str, offered: list[int], vr: VersionResult, *, known: bool = False,
                         **kw: object) -> list[int]:
        """The server's picks from ``offered`` in order. ``known``: every suite offered was accepted before
        (merging chunks), so the last one left needs no hello of its own."""
        remaining = list(offered)
        picks: list[int] = []
        while remaining:
            if known and len(remaining) == 1:
                picks.append(remaining.pop())
                break
            out = await self._ask(self._spec(version, remaining), **kw)
            if len(vr.evidence) < 3:
                vr.evidence.append(out)
            pick = self._picked(out, version, remaining)
            if pick is None:
                if known:  # they were accepted: a failed hello here loses their rank, not the suites
                    self.f.notes.append(f"{version} suites: {len(remaining)} accepted suites could not be ranked "
                                        f"({out.kind}{': ' + out.detail if out.detail else ''}); listed last")
                    vr.order_incomplete = True
                    picks.extend(remaining)
                break
            picks.append(pick)
            remaining.remove(pick)
        return picks

    async def version(self, version: str) -> VersionResult:
        vr = VersionResult()
        self.f.versions[version] = vr
        candidates = suites_for(version)
        chunks = [candidates[i:i + CHUNK] for i in range(0, len(candidates), CHUNK)]
        results = await asyncio.gather(*(self._eliminate(version, c, vr) for c in chunks))
        accepted = [s for r in results for s in r]
        if not accepted:
            return vr
        vr.accepted = True
        if sum(1 for r in results if r) > 1:
            accepted = await self._eliminate(version, accepted, vr, known=True)
        vr.suites = accepted
        if len(accepted) >= 2 and not vr.order_incomplete:
            out = await self._ask(self._spec(version, list(reversed(accepted))))
            pick = self._picked(out, version, accepted)
            vr.order = "server" if pick == accepted[0] else "client" if pick == accepted[-1] else "unknown"
        return vr

    async def reachability(self) -> Outcome:
        """A hello offering TLS 1.0-1.3 and common suites: does anything TLS-like answer at all?"""
        common = [0x1301, 0x1302, 0x1303, 0xC02F, 0xC030, 0xC02B, 0xC02C, 0x009E, 0x009C, 0x002F, 0x0035, 0x000A]
        spec = self._spec("TLSv1.3", common, supported_versions=[0x0304, 0x0303, 0x0302, 0x0301])
        return await self._ask(spec)

    async def sslv2(self) -> None:
        self.f.probes += 1
        out = await self._probe(wire.build_sslv2_client_hello(SSLV2_KINDS))
        vr = VersionResult(evidence=[out])
        if out.sslv2 is not None:
            self.f.sslv2_kinds = [k for k in out.sslv2[1] if k in cipher_suites()] or out.sslv2[1]
            vr.accepted = True
            vr.suites = self.f.sslv2_kinds
        self.f.versions["SSLv2"] = vr

    # ---- details that need the accepted suites -------------------------------------------------

    async def details_tls12(self, version: str) -> None:
        """Flight facts (certificate, CertificateRequest, extensions, compression), groups, signatures."""
        vr = self.f.versions[version]
        suites = vr.suites
        out = await self._ask(self._spec(version, suites, deflate=True), full_flight=True)
        sh = out.server_hello
        if out.accepted and sh is not None:
            self.f.compression = sh.compression != 0
            self.f.renegotiation_info = wire.EXT_RENEGOTIATION_INFO in sh.extensions
            self.f.extended_master_secret = wire.EXT_EXTENDED_MASTER_SECRET in sh.extensions
            self.f.encrypt_then_mac = wire.EXT_ENCRYPT_THEN_MAC in sh.extensions
            if out.certificates:
                self.f.certificates = out.certificates
            self.f.certificate_request = out.certificate_request
        table = cipher_suites()
        ecdhe = [s for s in suites if table[s].kx.upper().startswith("ECDH") and "ECDHE" in table[s].iana]
        dhe = [s for s in suites if "_DHE_" in table[s].iana]
        signed = [s for s in suites if ("ECDHE_" in table[s].iana or "_DHE_" in table[s].iana)
                  and table[s].au.upper() in ("RSA", "ECDSA", "DSS")]
        jobs: list[Awaitable[None]] = []
        if ecdhe:
            jobs.append(self._groups12(version, ecdhe))
        if dhe:
            jobs.append(self._dhe(version, dhe))
        if signed and version == "TLSv1.2":
            jobs.append(self._sigalgs12(signed))
        await asyncio.gather(*jobs)

    def _pinned_curve(self, suites: list[int]) -> int | None:
        """The ECDSA certificate's curve when it must be in every TLS 1.2 offer, else None.

        OpenSSL (and RFC 4492 §5.1) uses an ECDSA certificate only if the client lists its curve, so on
        an ECDSA-only server a hello offering one other group fails although that group is supported.
        """
        table = cipher_suites()
        if not self.f.certificates or any(table[s].au.upper() != "ECDSA" for s in suites):
            return None
        name = certificate.ec_curve(self.f.certificates[0])
        return GROUP_CODES.get(name) if name else None

    async def _groups12(self, version: str, ecdhe: list[int]) -> None:
        """TLS 1.2 ECDHE groups from the ServerKeyExchange named curve (RFC 8422 §5.4), ordered by elimination.

        One group per hello, except on an ECDSA-only server: there each hello offers the probed group
        first and the certificate's curve after it, and the ServerKeyExchange tells which of the two the
        server took. A server that takes the certificate's curve either lacks the probed group or ranks
        it lower; with client preference that means it lacks it, with server preference the two cannot
        be told apart in TLS 1.2 and the audit says so (``RawFindings.notes``).
        """
        pin = self._pinned_curve(ecdhe)

        async def pick(offer: list[int]) -> int | None:
            if pin is not None and pin not in offer:
                offer = [*offer, pin]
            out = await self._ask(self._spec(version, ecdhe, groups=offer), full_flight=True)
            kx = out.key_exchange
            return kx.group if out.accepted and kx is not None else None

        candidates = [g for g in ALL_GROUPS_12 if g < 256]
        picks = await asyncio.gather(*(pick([g]) for g in candidates))
        found = [g for g, p in zip(candidates, picks, strict=True) if p == g]
        masked = [g for g, p in zip(candidates, picks, strict=True) if pin is not None and g != pin and p == pin]
        ordered, order = await self._order(found, pick)
        if pin is not None and pin in ordered and order == "server" and len(ordered) > 1:
            # Elimination cannot go past the certificate's curve: the server keeps picking it.
            after = ordered[ordered.index(pin) + 1:]
            if after and await pick(after) == pin:
                self.f.notes.append(f"TLS 1.2 groups after {group_name(pin)} (the ECDSA certificate's curve) "
                                    "are listed in no known order: the server prefers that curve and needs it offered")
        if masked and order != "client":
            self.f.notes.append(
                f"TLS 1.2 groups: the ECDSA certificate needs {group_name(pin or 0)} in every offer; groups the "
                f"server ranks below it cannot be told from unsupported ones ({len(masked)} such groups not listed)")
        self.f.groups12 = [group_name(g) for g in ordered]
        self.f.groups12_order = order

    async def _dhe(self, version: str, dhe: list[int]) -> None:
        out = await self._ask(self._spec(version, dhe), full_flight=True)
        if out.accepted and out.key_exchange is not None and out.key_exchange.dh_bits:
            self.f.dhe_bits = out.key_exchange.dh_bits

    async def _sigalgs12(self, signed: list[int]) -> None:
        async def one(s: int) -> int | None:
            out = await self._ask(self._spec("TLSv1.2", signed, signature_algorithms=[s]), full_flight=True)
            kx = out.key_exchange
            return s if out.accepted and kx is not None and kx.signature_scheme == s else None

        found = [s for s in await asyncio.gather(*(one(s) for s in SIGALGS_12)) if s is not None]

        async def pick(offer: list[int]) -> int | None:
            out = await self._ask(self._spec("TLSv1.2", signed, signature_algorithms=offer), full_flight=True)
            kx = out.key_exchange
            return kx.signature_scheme if out.accepted and kx is not None else None

        ordered, order = await self._order(found, pick)
        self.f.sigalgs12 = [signature_name(s) for s in ordered]
        self.f.sigalgs12_order = order

    async def details_tls13(self) -> None:
        suites = self.f.versions["TLSv1.3"].suites
        finish = await self._ask(self._spec("TLSv1.3", suites), finish_tls13=True)
        if finish.accepted:
            if finish.certificates:
                self.f.certificates = finish.certificates
            self.f.certificate_request = bool(self.f.certificate_request) or finish.certificate_request
            if finish.certificate_request:
                self.f.client_auth_tls13 = finish.client_auth
        await asyncio.gather(self._groups13(suites), self._sigalgs13(suites), self._prefers13())

    async def _groups13(self, suites: list[int]) -> None:
        async def hrr(offer: list[int]) -> int | None:
            out = await self._ask(self._spec("TLSv1.3", suites, groups=offer), with_keys=False)
            sh = out.server_hello
            return sh.selected_group if out.accepted and sh is not None else None

        async def one(g: int) -> int | None:
            return g if await hrr([g]) == g else None

        found = [g for g in await asyncio.gather(*(one(g) for g in TLS13_GROUPS)) if g is not None]
        ordered, order = await self._order(found, hrr)
        self.f.groups13 = [group_name(g) for g in ordered]
        self.f.groups13_order = order

    async def _sigalgs13(self, suites: list[int]) -> None:
        async def pick(offer: list[int]) -> int | None:
            out = await self._ask(self._spec("TLSv1.3", suites, signature_algorithms=offer))
            return out.tls13_signature_scheme if out.accepted else None

        async def one(s: int) -> int | None:
            return s if await pick([s]) == s else None

        found = [s for s in await asyncio.gather(*(one(s) for s in TLS13_SIGNATURE_SCHEMES)) if s is not None]
        ordered, order = await self._order(found, pick)
        self.f.sigalgs13 = [signature_name(s) for s in ordered]
        self.f.sigalgs13_order = order

    async def _prefers13(self) -> None:
        t12 = self.f.versions.get("TLSv1.2")
        suites = self.f.versions["TLSv1.3"].suites + (t12.suites if t12 else [])
        out = await self._ask(self._spec("TLSv1.3", suites, supported_versions=[0x0303, 0x0304]))
        sh = out.server_hello
        self.f.prefers_tls13 = bool(out.accepted and sh is not None and sh.version == 0x0304)

    async def fallback(self, accepted: list[str]) -> None:
        """RFC 7507 §3: a hello for a lower version carrying TLS_FALLBACK_SCSV must get inappropriate_fallback.

        Needs two accepted versions. The hello is for the highest accepted legacy version (TLS 1.1 or
        older: the downgrade RFC 8996 is about), else the second-highest accepted version, with the
        suites accepted there; anything but that alert or a ServerHello leaves the fact undetermined.
        """
        order = [v for v in ("TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1.0", "SSLv3") if v in accepted]
        if len(order) < 2:
            self.f.fallback_scsv_status = "not_applicable"
            self.f.fallback_scsv_detail = f"only {order[0] if order else 'no version'} accepted: nothing to fall back to"
            return
        legacy = [v for v in order[1:] if v in ("TLSv1.1", "TLSv1.0", "SSLv3")]
        lower = legacy[0] if legacy else order[1]
        out = await self._ask(self._spec(lower, self.f.versions[lower].suites, fallback_scsv=True))
        sh = out.server_hello
        said = f"{lower} hello with TLS_FALLBACK_SCSV (server accepts {order[0]})"
        if out.kind == "alert" and out.alert is not None and out.alert.description == ALERT_INAPPROPRIATE_FALLBACK:
            self.f.fallback_scsv, self.f.fallback_scsv_status = True, "supported"
            self.f.fallback_scsv_detail = f"{said}: inappropriate_fallback alert"
        elif out.accepted and sh is not None and sh.version == VERSION_CODES[lower]:
            self.f.fallback_scsv, self.f.fallback_scsv_status = False, "not_supported"
            self.f.fallback_scsv_detail = f"{said}: accepted ({suite_name(sh.cipher_suite)})"
        else:
            self.f.fallback_scsv_status = "undetermined"
            answer = (f"alert {out.alert.name}" if out.kind == "alert" and out.alert is not None
                      else f"ServerHello for {wire.version_name(sh.version)}" if sh is not None
                      else f"{out.kind}{': ' + out.detail if out.detail else ''}")
            self.f.fallback_scsv_detail = f"{said}: {answer}, neither inappropriate_fallback nor a {lower} ServerHello"

    async def _order(self, found: list[int], pick: Callable[[list[int]], Awaitable[int | None]]) -> tuple[list[int], Order]:
        """Order ``found`` by elimination; tell server from client preference by reversing the offer."""
        if len(found) < 2:
            return found, "unknown"
        # The two offers are independent connections: ask them at once (one handshake time, not two).
        first, rev = await asyncio.gather(pick(found), pick(list(reversed(found))))
        if first is None or rev is None:
            return found, "unknown"
        if first != rev:
            return found, "client"
        remaining = list(found)
        ordered: list[int] = []
        while remaining:
            if len(remaining) == 1:  # accepted alone when ``found`` was built: nothing left to rank it against
                ordered.append(remaining.pop())
                break
            p = first if not ordered else await pick(remaining)
            if p is None or p not in remaining:
                break
            ordered.append(p)
            remaining.remove(p)
        return ordered + remaining, "server"


def names(codes: Sequence[int]) -> list[str]:
    return [suite_name(c) for c in codes]
