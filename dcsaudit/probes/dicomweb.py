"""DICOMweb capability and access control on HTTP(S) endpoints (PS3.18 §10.4 Search, §10.4 / §10.6
Retrieve and Store transactions; RFC 9110 §11 authentication; RFC 6797 HSTS; Fetch/CORS).

No instance is ever stored or retrieved, and no patient data is read:

- QIDO-RS: ``GET {base}/studies?StudyInstanceUID=<fresh random 2.25 UID>&limit=1`` — a search that can
  match nothing, so a 200 in DICOM JSON (or a 204) proves the search is served (to whoever asked) without
  returning any study. A base path counts only when this search is answered as a search or challenged
  (401/403): web servers that answer 200 text/html to every path are not DICOMweb;
- WADO-RS: ``GET {base}/studies/<that UID>/metadata`` — a study that does not exist: the status says
  whether the server asks for authentication before looking (401/403) or looks (404);
- STOW-RS: ``POST {base}/studies`` with ``Content-Type: text/plain`` and 8 bytes — PS3.18 §10.5 requires
  multipart/related or application/dicom+json: a server rejects it (415/400) before accepting data;
  a 401/403 says it asks for authentication first.

Each is made without credentials and, when configured, with them (bearer token or basic auth). The
``WWW-Authenticate`` schemes, ``Strict-Transport-Security`` and the CORS answer to a foreign ``Origin``
are recorded from the answers. Fills PS3.2 N.6.3 (DICOMweb configuration) and N.8.6 (web services
security).
"""

from __future__ import annotations

import base64
import http.client
import ssl
import time
import uuid
from dataclasses import dataclass

from dcsaudit.config import DicomwebAuth
from dcsaudit.context import AuditContext
from dcsaudit.models.core import Reason
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.network import DicomwebAnswer, DicomwebResult, DicomwebTransaction

PROBE = "dicomweb"
FOREIGN_ORIGIN = "https://dcsaudit-cors-check.invalid"
MAX_BODY = 4096  # bytes read of an answer: statuses and headers are what matters
STOW_BODY = b"dcsaudit"
TRANSACTIONS: tuple[DicomwebTransaction, ...] = ("qido", "wado", "stow")


@dataclass(frozen=True)
class Http:
    status: int | None
    headers: dict[str, str]
    body_start: bytes = b""
    error: str | None = None


def _ssl_context() -> ssl.SSLContext:
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE  # the TLS audit judges the certificate; here only HTTP facts
    return c


def request(host: str, port: int, tls: bool, method: str, path: str, headers: dict[str, str], body: bytes | None,
            timeout: float) -> Http:
    """One HTTP request (blocking, bounded by ``timeout`` per socket operation). Never raises."""
    conn: http.client.HTTPConnection = (
        http.client.HTTPSConnection(host, port, timeout=timeout, context=_ssl_context()) if tls
        else http.client.HTTPConnection(host, port, timeout=timeout))
    try:
        conn.request(method, path, body=body, headers={"User-Agent": "dcsaudit", "Connection": "close", **headers})
        resp = conn.getresponse()
        start = resp.read(MAX_BODY)
        # Header names are case-insensitive (RFC 9110 §5.1); repeated ones are joined.
        got: dict[str, str] = {}
        for k, v in resp.getheaders():
            got[k.lower()] = f"{got[k.lower()]}, {v}" if k.lower() in got else v
        return Http(resp.status, got, start)
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        return Http(None, {}, error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def auth_header(auth: DicomwebAuth | None) -> dict[str, str]:
    if auth is None:
        return {}
    if auth.bearer_token is not None:
        return {"Authorization": "Bearer " + auth.bearer_token.resolve().get_secret_value()}
    if auth.username is not None and auth.password is not None:
        pair = f"{auth.username}:{auth.password.resolve().get_secret_value()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {}


def _schemes(header: str | None) -> list[str]:
    """Scheme names of WWW-Authenticate challenges (RFC 9110 §11.6.1), e.g. ['Basic', 'Bearer']."""
    if not header:
        return []
    out = []
    for part in header.split(","):
        word = part.strip().split(" ", 1)[0]
        if word and "=" not in word:
            out.append(word)
    return list(dict.fromkeys(out))


def _answer(kind: DicomwebTransaction, h: Http, ev: str) -> DicomwebAnswer:
    return DicomwebAnswer(transaction=kind, status=h.status, content_type=h.headers.get("content-type"),
                          auth_schemes=_schemes(h.headers.get("www-authenticate")), error=h.error, evidence=ev)


def _paths(base: str, study: str) -> dict[str, tuple[str, str, dict[str, str], bytes | None]]:
    b = base.rstrip("/")
    return {
        "qido": ("GET", f"{b}/studies?StudyInstanceUID={study}&limit=1", {"Accept": "application/dicom+json"}, None),
        "wado": ("GET", f"{b}/studies/{study}/metadata", {"Accept": "application/dicom+json"}, None),
        "stow": ("POST", f"{b}/studies", {"Content-Type": "text/plain", "Accept": "application/dicom+json"}, STOW_BODY),
    }


async def probe_dicomweb(ctx: AuditContext, ep: Endpoint) -> DicomwebResult:
    """Find a DICOMweb base path on one HTTP(S) endpoint and record its access control. Never raises for
    network conditions."""
    o = ctx.config.scan.dicomweb
    t = ctx.config.scan.timeouts.read
    tls = ep.service == "https"
    study = f"2.25.{uuid.uuid4().int}"  # a UID that matches no study anywhere
    evidence: list[str] = []

    async def send(kind: DicomwebTransaction, base: str, creds: dict[str, str], what: str) -> DicomwebAnswer:
        method, path, headers, body = _paths(base, study)[kind]
        start = time.perf_counter()
        h = await ctx.limiter.run_blocking(ep.host, request, ep.host, ep.port, tls, method, path,
                                           {**headers, "Origin": FOREIGN_ORIGIN, **creds}, body, t)
        status = f"HTTP {h.status}" if h.status is not None else f"no HTTP answer ({h.error})"
        ev = ctx.evidence.add(f"{PROBE}.{kind}", ep.key, h.status is not None,
                              f"{kind.upper()}-RS {method} {path.split('?')[0]} {what}: {status}",
                              reason=None if h.status is not None else Reason.PROTOCOL_ERROR,
                              data={"status": h.status, "path": path, "with_credentials": bool(creds),
                                    "content_type": h.headers.get("content-type"),
                                    "www_authenticate": h.headers.get("www-authenticate"),
                                    "hsts": h.headers.get("strict-transport-security"),
                                    "cors": h.headers.get("access-control-allow-origin")},
                              duration_ms=(time.perf_counter() - start) * 1000)
        evidence.append(ev.id)
        answers_headers[(kind, bool(creds))] = h.headers
        return _answer(kind, h, ev.id)

    answers_headers: dict[tuple[DicomwebTransaction, bool], dict[str, str]] = {}
    try:
        creds = auth_header(o.auth)
    except Exception as exc:  # an unreadable secret: say which field, never the value
        creds = {}
        evidence.append(ctx.evidence.add(PROBE, ep.key, False, f"dicomweb.auth could not be read: "
                                         f"{type(exc).__name__}", reason=Reason.NOT_AVAILABLE).id)
    base: str | None = None
    first: DicomwebAnswer | None = None
    tried: list[str] = []
    for candidate in o.base_paths:
        tried.append(candidate)
        a = await send("qido", candidate, {}, "without credentials")
        if a.status is None:
            return DicomwebResult(base_path=None, paths_tried=tried, over_tls=tls, error=a.error, evidence=evidence)
        # Any web server answers something (single-page apps answer 200 everywhere): a path is DICOMweb's
        # when the search is challenged or answered as a search.
        if a.challenged or _is_search_answer(a):
            base, first = candidate, a
            break
    if base is None or first is None:
        return DicomwebResult(base_path=None, paths_tried=tried, over_tls=tls, evidence=evidence)
    unauth: dict[DicomwebTransaction, DicomwebAnswer] = {"qido": first}
    unauth["wado"] = await send("wado", base, {}, "without credentials")
    unauth["stow"] = await send("stow", base, {}, "without credentials")
    auth: dict[DicomwebTransaction, DicomwebAnswer] = {}
    if creds:
        for kind in TRANSACTIONS:
            auth[kind] = await send(kind, base, creds, "with the configured credentials")
    h = answers_headers[("qido", False)]
    confirmed = _is_search_answer(first) or ("qido" in auth and _is_search_answer(auth["qido"]))
    return DicomwebResult(
        base_path=base, paths_tried=tried, confirmed=confirmed, over_tls=tls,
        unauthenticated=list(unauth.values()), authenticated=list(auth.values()),
        auth_schemes=list(dict.fromkeys(s for a in unauth.values() for s in a.auth_schemes)),
        hsts=h.get("strict-transport-security"), cors_allow_origin=h.get("access-control-allow-origin"),
        cors_allow_credentials=h.get("access-control-allow-credentials"), evidence=evidence)


def _is_search_answer(a: DicomwebAnswer) -> bool:
    """A search result: 2xx in a DICOM JSON media type (PS3.18 §8.7.3), or 204 No Content (no match)."""
    ct = (a.content_type or "").split(";")[0].strip().lower()
    return a.status == 204 or (a.status is not None and 200 <= a.status < 300
                               and ct in ("application/dicom+json", "application/json"))
