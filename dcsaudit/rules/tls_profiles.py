"""The TLS rule book: PS3.15 Annex B profile verdicts and the suite judgements checks share.

The book is ``configs/tls_profiles.yaml`` (data, not code): the legacy versions, named suite classes
(selected by the registry attributes of ``tls_suites``), the current profiles' rules and the retired
profiles' fingerprints. B.12 "BCP 195 RFC 8996 TLS" and B.13 "Modified BCP 195 RFC 8996 TLS" are judged
rule by rule; each failed rule gives a precise reason ("TLS 1.0 accepted", "TLS_RSA_WITH_AES_128_CBC_SHA
accepted: SHA-1 MAC", "RSA key 1024 bits below 2048"). Retired profiles (B.1, B.3, B.9-B.11) are
recognised by fingerprint. A verdict is three-valued (conforms / conforms with SHOULD-level deviations /
does not conform): every rule keeps the level its source gives it, and the reference implementation's
stricter practice (DCMTK refusing SHA-1-MAC suites for B.12) is a SHOULD-level note, never a MUST. The checks ask the same book which accepted versions are legacy and which
accepted suites are weak or not forward-secret, so checks and profile verdicts cannot disagree.

Pure functions over the facts of a ``TlsResult`` (what the probe measured): no I/O besides loading the
rules file once. The probe does not judge; the checks and the annex call :func:`evaluate` and
:func:`retired_profiles`, and :func:`judge_endpoints` copies the verdicts onto the results for
``report.json``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dcsaudit import packaged_yaml
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.tls import TLS_VERSIONS, Conformance, ProfileVerdict, TlsResult
from dcsaudit.rules.tls_suites import GROUP_BITS, CipherSuite, cipher_suites, suites_by_name

RuleKind = Literal[
    "forbidden_versions", "required_versions", "prefer_tls13", "forbidden_suites", "required_suites",
    "preferred_suite", "min_key_bits", "forbidden_cert_hashes", "forbidden_signature_schemes",
    "min_group_bits", "required_features", "no_compression", "allowed_suites_only", "tls13_all_suites",
]
VERSION_LABEL = {"SSLv2": "SSL 2.0", "SSLv3": "SSL 3.0", "TLSv1.0": "TLS 1.0", "TLSv1.1": "TLS 1.1",
                 "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3"}
# The class the check tls.forward_secrecy fails on; the book must define it.
NO_FORWARD_SECRECY = "no_forward_secrecy"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_versions(v: list[str]) -> list[str]:
    bad = [x for x in v if x not in TLS_VERSIONS]
    if bad:
        raise ValueError(f"unknown TLS version(s) {bad}")
    return v


def _known_suites(v: list[str]) -> list[str]:
    known = suites_by_name()
    bad = [s for s in v if s not in known]
    if bad:
        raise ValueError(f"unknown cipher suite name(s) {bad}")
    return v


class SuiteClass(_Strict):
    """A named set of cipher suites: those meeting every selector given (see the rules file)."""

    why: str = Field(min_length=3)
    source: str = Field(min_length=3)
    pattern: str | None = None
    kx: list[str] = Field(default_factory=list)
    au: list[str] = Field(default_factory=list)
    enc: list[str] = Field(default_factory=list)
    mac: list[str] = Field(default_factory=list)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            re.compile(v)
        return v

    def selectors(self) -> dict[str, list[str]]:
        """Registry column -> accepted values, for the columns this class selects on."""
        return {c: v for c, v in (("kx", self.kx), ("au", self.au), ("enc", self.enc), ("mac", self.mac)) if v}

    @model_validator(mode="after")
    def _known_values(self) -> SuiteClass:
        if self.pattern is None and not self.selectors():
            raise ValueError("a suite class needs a pattern or a kx/au/enc/mac selector")
        for column, wanted in self.selectors().items():
            seen = {_attributes(s)[column] for s in cipher_suites().values()}
            bad = [w for w in wanted if w not in seen]
            if bad:
                raise ValueError(f"{column} value(s) {bad} do not occur in the cipher suite registry")
        return self

    def matches(self, suite: str) -> bool:
        """Whether the suite named ``suite`` (IANA name) is in this class."""
        if self.pattern is not None and not re.search(self.pattern, suite):
            return False
        selectors = self.selectors()
        if not selectors:
            return True
        known = suites_by_name().get(suite)
        if known is None:
            return False
        attrs = _attributes(known)
        return all(attrs[column] in wanted for column, wanted in selectors.items())


def _attributes(s: CipherSuite) -> dict[str, str]:
    """The registry columns a suite class selects on (kx and enc without their "(bits)" suffix)."""
    return {"kx": s.kx_family, "au": s.au, "enc": s.enc_family, "mac": s.mac}


class Rule(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: RuleKind
    level: Literal["must", "should"]
    source: str = Field(min_length=3)
    versions: list[str] = Field(default_factory=list)
    pattern: str | None = None
    why: str = ""
    unless: Literal["encrypt_then_mac", "tls13_only"] | None = None
    suite: str | None = None
    suites: list[str] = Field(default_factory=list)
    suite_class: str | None = Field(default=None, alias="class")
    over: list[str] = Field(default_factory=list, description="preferred_suite: the classes it should precede")
    rsa: int | None = None
    ec: int | None = None
    dhe: int | None = None
    hashes: list[str] = Field(default_factory=list)
    features: list[str] = Field(default_factory=list)

    @field_validator("versions")
    @classmethod
    def _versions(cls, v: list[str]) -> list[str]:
        return _known_versions(v)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            re.compile(v)
        return v

    @field_validator("suites")
    @classmethod
    def _suites(cls, v: list[str]) -> list[str]:
        return _known_suites(v)

    @field_validator("suite")
    @classmethod
    def _suite(cls, v: str | None) -> str | None:
        if v is not None:
            _known_suites([v])
        return v

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        if self.kind == "forbidden_suites" and (self.suite_class is None) == (not self.suites):
            raise ValueError("forbidden_suites names either a class or suites (with why)")
        if self.kind == "forbidden_suites" and self.suites and not self.why:
            raise ValueError("forbidden_suites with suites needs a why")
        if self.kind == "required_suites" and (self.suite_class is None or not self.versions):
            raise ValueError("required_suites needs a class and versions")
        if self.kind == "forbidden_signature_schemes" and self.pattern is None:
            raise ValueError("forbidden_signature_schemes needs a pattern")
        if self.kind == "preferred_suite" and self.suite is None:
            raise ValueError("preferred_suite needs a suite")
        return self

    def classes(self) -> list[str]:
        """The suite classes this rule refers to."""
        return ([self.suite_class] if self.suite_class else []) + self.over


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


class LegacyVersions(_Strict):
    versions: list[str] = Field(min_length=1)
    source: str = Field(min_length=3)

    @field_validator("versions")
    @classmethod
    def _versions(cls, v: list[str]) -> list[str]:
        return _known_versions(v)


class ProfileBook(_Strict):
    legacy_versions: LegacyVersions
    suite_classes: dict[str, SuiteClass]
    weak_suite_classes: list[str] = Field(min_length=1)
    profiles: list[Profile]
    retired: list[Retired] = Field(default_factory=list)

    @model_validator(mode="after")
    def _class_names(self) -> ProfileBook:
        used = [*self.weak_suite_classes, NO_FORWARD_SECRECY]
        used += [c for p in self.profiles for rule in p.rules for c in rule.classes()]
        unknown = sorted({c for c in used if c not in self.suite_classes})
        if unknown:
            raise ValueError(f"unknown suite class(es) {unknown}")
        return self

    def find(self, name: str) -> Profile | None:
        key = " ".join(name.split()).casefold().removesuffix(" secure transport connection profile")
        for p in self.profiles:
            if key in (n.casefold() for n in (p.name, *p.aliases)):
                return p
        return None

    def in_class(self, suite: str, name: str) -> bool:
        return self.suite_classes[name].matches(suite)

    def in_any(self, suite: str, names: Iterable[str]) -> bool:
        return any(self.suite_classes[n].matches(suite) for n in names)


def _rules_text() -> str:
    # configs/ is installed as dcsaudit.configs (see pyproject), like dcsaudit.checks: always present.
    return resources.files("dcsaudit.configs").joinpath("tls_profiles.yaml").read_text(encoding="utf-8")


@cache
def load_profiles(path: str | None = None) -> ProfileBook:
    """The rule book (``configs/tls_profiles.yaml``, or ``path``), validated, loaded once."""
    text = Path(path).read_text(encoding="utf-8") if path else _rules_text()
    return ProfileBook.model_validate(packaged_yaml.load(text))


def _all_suites(r: TlsResult) -> list[tuple[str, str]]:
    return [(v, s) for v in TLS_VERSIONS for s in r.protocols.get(v, [])]


def _accepted_suites(r: TlsResult) -> list[str]:
    """Every accepted suite once, oldest version first, each version in the server's order."""
    return list(dict.fromkeys(s for _v, s in _all_suites(r)))


# What the checks ask the book (tls.no_legacy_protocols, tls.weak_ciphers, tls.forward_secrecy).

def legacy_versions(r: TlsResult, book: ProfileBook | None = None) -> list[str]:
    """Accepted versions the book calls legacy (RFC 8996), oldest first."""
    book = book or load_profiles()
    return [v for v in TLS_VERSIONS if v in book.legacy_versions.versions and r.protocols.get(v)]


def weak_suites(r: TlsResult, book: ProfileBook | None = None) -> list[str]:
    """Accepted suites in one of the book's ``weak_suite_classes``, sorted."""
    book = book or load_profiles()
    return sorted(s for s in _accepted_suites(r) if book.in_any(s, book.weak_suite_classes))


def non_forward_secret_suites(r: TlsResult, book: ProfileBook | None = None) -> list[str]:
    """Accepted suites in the book's ``no_forward_secrecy`` class, sorted."""
    book = book or load_profiles()
    return sorted(s for s in _accepted_suites(r) if book.in_class(s, NO_FORWARD_SECRECY))


def _apply(rule: Rule, r: TlsResult, book: ProfileBook) -> list[str]:
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
        if rule.unless == "encrypt_then_mac" and r.features.encrypt_then_mac:
            return []
        if rule.suite_class is not None:
            why = book.suite_classes[rule.suite_class].why
            return [f"{s} accepted: {why}" for s in _accepted_suites(r) if book.in_class(s, rule.suite_class)]
        return [f"{s} accepted: {rule.why}" for s in _accepted_suites(r) if s in rule.suites]
    if k == "required_suites":
        assert rule.suite_class is not None
        offered = [s for v in rule.versions for s in r.protocols.get(v, [])]
        if rule.unless == "tls13_only" and not offered and r.protocols.get("TLSv1.3"):
            return []
        if any(book.in_class(s, rule.suite_class) for s in offered):
            return []
        label = "/".join(VERSION_LABEL[v] for v in rule.versions)
        return [f"no {book.suite_classes[rule.suite_class].why} {label} suite accepted"]
    if k == "preferred_suite":
        t12 = r.protocols.get("TLSv1.2", [])
        if rule.suite in t12 and r.preference_by_version.get("TLSv1.2") == "server" and t12[0] != rule.suite:
            weaker = [s for s in t12[: t12.index(rule.suite)] if book.in_any(s, rule.over)]
            if weaker:
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
    """One verdict per current profile, three-valued: a failed MUST-level rule → does not conform; only
    SHOULD-level rules failed → conforms with SHOULD-level deviations; none → conforms. Each rule keeps
    the level its source gives it. Nothing accepted at all: not conformant ("no TLS version accepted")."""
    book = book or load_profiles()
    out: dict[str, ProfileVerdict] = {}
    for p in book.profiles:
        reasons: list[str] = []
        warnings: list[str] = []
        sources: list[str] = []
        warning_sources: list[str] = []
        if not r.accepted_versions():
            reasons.append("no TLS version accepted")
        else:
            for rule in p.rules:
                found = _apply(rule, r, book)
                if found:
                    must = rule.level == "must"
                    (reasons if must else warnings).extend(found)
                    cited = sources if must else warning_sources
                    if rule.source not in cited:
                        cited.append(rule.source)
        verdict: Conformance = ("does_not_conform" if reasons
                                else "conforms_with_should_deviations" if warnings else "conforms")
        out[p.name] = ProfileVerdict(conforms=not reasons, verdict=verdict, reasons=reasons, warnings=warnings,
                                     sources=sources, warning_sources=warning_sources)
    return out


VERDICT_LABEL: dict[str, str] = {
    "conforms": "conforms",
    "conforms_with_should_deviations": "conforms with SHOULD-level deviations",
    "does_not_conform": "does not conform",
}


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


def judged(r: TlsResult, book: ProfileBook | None = None) -> TlsResult:
    """``r`` with ``profiles`` and ``retired_profiles`` judged from its facts; none for a failed audit."""
    if r.error is not None or not r.accepted_versions():
        return r.model_copy(update={"profiles": {}, "retired_profiles": []})
    return r.model_copy(update={"profiles": evaluate(r, book), "retired_profiles": retired_profiles(r, book)})


def judge_endpoints(endpoints: Sequence[Endpoint], book: ProfileBook | None = None) -> list[Endpoint]:
    """The endpoints with the verdicts on their TLS results, for readers of ``report.json``."""
    return [e.model_copy(update={"tls": judged(e.tls, book)}) if e.tls is not None else e for e in endpoints]
