"""PS3.15 Annex B profile verdicts, from the rules in ``configs/tls_profiles.yaml`` (data, not code).

B.12 "BCP 195 RFC 8996 TLS" and B.13 "Modified BCP 195 RFC 8996 TLS" are judged rule by rule; each
failed rule gives a precise reason ("TLS 1.0 accepted", "TLS_RSA_WITH_AES_128_CBC_SHA accepted: static
RSA key exchange (no forward secrecy)", "RSA key 1024 bits below 2048"). Retired profiles (B.1, B.3,
B.9-B.11) are recognised by fingerprint. Pure functions over a ``TlsResult``: no I/O besides loading
the rules file once.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dcsaudit.models.tls import TLS_VERSIONS, ProfileVerdict, TlsResult
from dcsaudit.probes.tls.registry import GROUP_BITS, suites_by_name

RuleKind = Literal[
    "forbidden_versions", "required_versions", "prefer_tls13", "forbidden_suites", "forward_secret_aead",
    "preferred_suite", "min_key_bits", "forbidden_cert_hashes", "forbidden_signature_schemes",
    "min_group_bits", "required_features", "no_compression", "allowed_suites_only", "tls13_all_suites",
]
VERSION_LABEL = {"SSLv2": "SSL 2.0", "SSLv3": "SSL 3.0", "TLSv1.0": "TLS 1.0", "TLSv1.1": "TLS 1.1",
                 "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Strict):
    kind: RuleKind
    level: Literal["must", "should"]
    source: str = Field(min_length=3)
    versions: list[str] = Field(default_factory=list)
    pattern: str | None = None
    why: str = ""
    unless: Literal["encrypt_then_mac"] | None = None
    suite: str | None = None
    suites: list[str] = Field(default_factory=list)
    rsa: int | None = None
    ec: int | None = None
    dhe: int | None = None
    hashes: list[str] = Field(default_factory=list)
    features: list[str] = Field(default_factory=list)

    @field_validator("versions")
    @classmethod
    def _versions(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in TLS_VERSIONS]
        if bad:
            raise ValueError(f"unknown TLS version(s) {bad}")
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            re.compile(v)
        return v

    @field_validator("suites")
    @classmethod
    def _suites(cls, v: list[str]) -> list[str]:
        known = suites_by_name()
        bad = [s for s in v if s not in known]
        if bad:
            raise ValueError(f"unknown cipher suite name(s) {bad}")
        return v


class Profile(_Strict):
    name: str
    aliases: list[str] = Field(default_factory=list)
    section: str
    rules: list[Rule] = Field(min_length=1)


class Retired(_Strict):
    name: str
    section: str
    source: str
    suites_all: list[str] = Field(default_factory=list)
    suites_any: list[str] = Field(default_factory=list)
    suites_only: list[str] = Field(default_factory=list)
    versions_all: list[str] = Field(default_factory=list)
    versions_any: list[str] = Field(default_factory=list)
    versions_none: list[str] = Field(default_factory=list)


class ProfileBook(_Strict):
    profiles: list[Profile]
    retired: list[Retired] = Field(default_factory=list)

    def find(self, name: str) -> Profile | None:
        key = " ".join(name.split()).casefold().removesuffix(" secure transport connection profile")
        for p in self.profiles:
            if key in (n.casefold() for n in (p.name, *p.aliases)):
                return p
        return None


def _rules_text() -> str:
    # configs/ is installed as dcsaudit.configs (see pyproject), like dcsaudit.checks: always present.
    return resources.files("dcsaudit.configs").joinpath("tls_profiles.yaml").read_text(encoding="utf-8")


@cache
def load_profiles(path: str | None = None) -> ProfileBook:
    text = Path(path).read_text(encoding="utf-8") if path else _rules_text()
    return ProfileBook.model_validate(yaml.safe_load(text))


def _all_suites(r: TlsResult) -> list[tuple[str, str]]:
    return [(v, s) for v in TLS_VERSIONS for s in r.protocols.get(v, [])]


def _hash_of_scheme(name: str) -> str:
    return name.rsplit("_", 1)[-1]


def _apply(rule: Rule, r: TlsResult) -> list[str]:
    """Reasons this rule fails on ``r`` (empty: the rule holds or cannot be judged)."""
    k = rule.kind
    if k == "forbidden_versions":
        return [f"{VERSION_LABEL[v]} accepted" for v in rule.versions if r.protocols.get(v)]
    if k == "required_versions":
        return [f"{VERSION_LABEL[v]} not accepted" for v in rule.versions if not r.protocols.get(v)]
    if k == "prefer_tls13":
        if r.protocols.get("TLSv1.3") and r.features.prefers_tls13 is False:
            return ["TLS 1.3 supported but TLS 1.2 chosen when both are offered"]
        return []
    if k == "forbidden_suites":
        assert rule.pattern is not None
        if rule.unless == "encrypt_then_mac" and r.features.encrypt_then_mac:
            return []
        rx = re.compile(rule.pattern)
        seen: list[str] = []
        for _v, s in _all_suites(r):
            if rx.search(s) and s not in seen:
                seen.append(s)
        return [f"{s} accepted: {rule.why}" for s in seen]
    if k == "forward_secret_aead":
        t12 = r.protocols.get("TLSv1.2", [])
        if not t12 and r.protocols.get("TLSv1.3"):
            return []
        ok = [s for s in t12 if ("ECDHE_" in s or "_DHE_" in s) and ("_GCM_" in s or "CHACHA20" in s or "_CCM" in s)]
        return [] if ok else ["no forward-secret AEAD TLS 1.2 suite accepted"]
    if k == "preferred_suite":
        t12 = r.protocols.get("TLSv1.2", [])
        if rule.suite in t12 and r.preference_by_version.get("TLSv1.2") == "server" and t12[0] != rule.suite:
            weaker = t12[: t12.index(rule.suite)]
            if any("_CBC_" in s or "TLS_RSA_" in s or "_DHE_" in s for s in weaker):
                return [f"server prefers {weaker[0]} over {rule.suite}"]
        return []
    if k == "min_key_bits":
        c = r.certificate
        if c is None:
            return []
        if c.key_type == "RSA" and rule.rsa and c.key_bits < rule.rsa:
            return [f"RSA key {c.key_bits} bits below {rule.rsa}"]
        if c.key_type == "EC" and rule.ec and c.key_bits < rule.ec:
            return [f"EC key {c.key_bits} bits below {rule.ec}"]
        if c.key_type == "DSA":
            return ["DSA certificate key (not usable with TLS 1.3)"]
        return []
    if k == "forbidden_cert_hashes":
        c = r.certificate
        if c is None:
            return []
        out: list[str] = []
        for i, link in enumerate(c.chain or [{"signature_hash": c.signature_hash or ""}]):
            h = (link.get("signature_hash") or "").lower()
            if h in rule.hashes and not (i > 0 and link.get("self_signed") == "yes"):
                who = "certificate" if i == 0 else f"chain certificate {i}"
                out.append(f"{who} signed with {h.upper()}")
        return out
    if k == "forbidden_signature_schemes":
        assert rule.pattern is not None
        rx = re.compile(rule.pattern)
        bad = [s for s in r.signature_algorithms if rx.search(s)]
        return [f"signature scheme {s} accepted: {rule.why}" for s in dict.fromkeys(bad)]
    if k == "min_group_bits":
        out = []
        for g in dict.fromkeys(r.groups):
            bits = GROUP_BITS.get(g)
            if g.startswith("DHE-") and g[4:].isdigit():
                bits = int(g[4:])
            if g.startswith(("ffdhe", "DHE-")):
                if rule.dhe and bits is not None and bits < rule.dhe:
                    out.append(f"DHE group {g} ({bits} bits) below {rule.dhe}")
            elif rule.ec and bits is not None and bits < rule.ec:
                out.append(f"EC group {g} ({bits} bits) below {rule.ec}")
        if rule.dhe and r.dhe_bits is not None and r.dhe_bits < rule.dhe:
            out.append(f"DHE prime {r.dhe_bits} bits below {rule.dhe}")
        return out
    if k == "required_features":
        if not r.protocols.get("TLSv1.2"):
            return []
        out = []
        for f in rule.features:
            if getattr(r.features, f, None) is False:
                out.append(f"{f} not supported in TLS 1.2")
        return out
    if k == "no_compression":
        return ["TLS compression accepted"] if r.features.compression else []
    if k == "allowed_suites_only":
        allowed = set(rule.suites)
        extra = [s for _v, s in _all_suites(r) if s not in allowed]
        return [f"{s} accepted: not in the profile's permitted list" for s in dict.fromkeys(extra)]
    if k == "tls13_all_suites":
        t13 = r.protocols.get("TLSv1.3", [])
        if not t13:
            return []
        return [f"TLS 1.3 suite {s} not supported (servers shall support all)" for s in rule.suites if s not in t13]
    return []


def evaluate(r: TlsResult, book: ProfileBook | None = None) -> dict[str, ProfileVerdict]:
    """One verdict per current profile. Nothing accepted at all: not conformant ("no TLS handshake")."""
    book = book or load_profiles()
    out: dict[str, ProfileVerdict] = {}
    for p in book.profiles:
        reasons: list[str] = []
        warnings: list[str] = []
        sources: list[str] = []
        if not r.accepted_versions():
            reasons.append("no TLS version accepted")
        else:
            for rule in p.rules:
                found = _apply(rule, r)
                if found:
                    (reasons if rule.level == "must" else warnings).extend(found)
                    if rule.level == "must" and rule.source not in sources:
                        sources.append(rule.source)
        out[p.name] = ProfileVerdict(conforms=not reasons, reasons=reasons, warnings=warnings, sources=sources)
    return out


def retired_profiles(r: TlsResult, book: ProfileBook | None = None) -> list[str]:
    """Names of retired profiles whose fingerprint matches what the server accepts."""
    book = book or load_profiles()
    accepted = {s for _v, s in _all_suites(r)}
    versions = set(r.accepted_versions())
    found: list[str] = []
    for ret in book.retired:
        if ret.suites_all and not set(ret.suites_all) <= accepted:
            continue
        if ret.suites_any and not set(ret.suites_any) & accepted:
            continue
        if ret.suites_only and not accepted <= set(ret.suites_only):
            continue
        if ret.versions_all and not set(ret.versions_all) <= versions:
            continue
        if ret.versions_any and not set(ret.versions_any) & versions:
            continue
        if ret.versions_none and set(ret.versions_none) & versions:
            continue
        found.append(f"{ret.name} ({ret.section})")
    return found
