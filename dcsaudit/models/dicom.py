"""DICOM association audit results. Contract names are relied on by scripts.

Contract fields (``report.json`` → ``application_entities[]``): ``ae_title``, ``host``, ``port``, ``tls``,
``verification``, ``accepts_any_called_ae``, ``accepts_any_calling_ae``, ``implementation_class_uid``,
``implementation_version_name``, ``max_pdu_length``, ``user_identity`` (``types`` "1".."5" → a
classification: supported / accepted_unchecked / not_checked / refused / undetermined / not_tested,
with its reason and evidence; ``enforced``), ``artim_seconds``, ``max_associations``, ``busy_retries``.
``None`` always means undetermined, never "no". Everything else is detail that backs those answers
(PS3.7 D.3.3, PS3.8 §9.3).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dcsaudit.models.core import Model
from dcsaudit.models.network import ServedCertificate
from dcsaudit.models.tls import TlsSession

# How one association attempt ended, from the requestor's point of view.
AssocOutcome = Literal[
    "accepted",  # A-ASSOCIATE-AC (even when every presentation context was refused)
    "rejected",  # A-ASSOCIATE-RJ, with its (result, source, reason) triple
    "aborted",  # A-ABORT or A-P-ABORT instead of an answer
    "closed",  # the peer closed TCP without a PDU
    "refused",  # TCP connection refused
    "timeout",  # no answer within the ACSE/connect timeout
    "tls_failure",
    "protocol_error",  # the answer was not a well-formed PDU (garbage, absurd length, …)
    "error",  # anything else (unreachable, internal)
]

class RejectTriple(Model):
    """A-ASSOCIATE-RJ fields (PS3.8 §9.3.4): result, source, reason/diag, with their PS3.8 meanings."""

    result: int
    source: int
    reason: int
    result_str: str = ""
    source_str: str = ""
    reason_str: str = ""


class AbortInfo(Model):
    """A-ABORT fields (PS3.8 §9.3.8)."""

    source: int
    reason: int
    reason_str: str = ""


class PresentationContextResult(Model):
    """One proposed presentation context and the acceptor's answer (PS3.8 §9.3.3.2)."""

    context_id: int
    abstract_syntax: str
    name: str = ""
    transfer_syntaxes: list[str] = Field(default_factory=list, description="proposed")
    result: int | None = Field(default=None, description="0 acceptance, 1 user-rejection, 2 no-reason, "
                               "3 abstract-syntax-not-supported, 4 transfer-syntaxes-not-supported")
    accepted_transfer_syntax: str | None = None

    @property
    def accepted(self) -> bool:
        return self.result == 0


# Why the association audit sent one A-ASSOCIATE-RQ. The parts that used to be spelled into the string
# (identity type, credential validity, counting run and position) are typed fields of the attempt.
AttemptPurpose = Literal[
    "baseline",  # configured titles, Verification + configured SOP classes, C-ECHO
    "baseline_with_identity",  # the baseline again with valid credentials, when the plain one was refused
    "any_called_ae",  # random 16-character Called AE Title
    "any_calling_ae",  # random Calling AE Title
    "default_called_ae",  # a vendor-default Called AE Title (scan.dicom.default_called_aes)
    "default_calling_ae",  # a vendor-default Calling AE Title
    "user_identity",  # User Identity Negotiation probe: ``user_identity_type`` + ``credentials``
    "idle_association",  # an accepted association held silent to time the idle timer (intrusive)
    "max_associations",  # one of the associations held at once: ``run`` + ``index`` (intrusive)
]
# The credentials of the User Identity sub-item sent: dcsaudit's deliberately wrong ones or the configured ones.
Credentials = Literal["invalid", "valid"]


class AssociationAttempt(Model):
    """One association request and what came back; also shown as the data of its Evidence item."""

    purpose: AttemptPurpose
    user_identity_type: int | None = Field(
        default=None, ge=1, le=5, description="User-Identity-Type of the identity sub-item sent (None: none sent)")
    credentials: Credentials | None = Field(
        default=None, description="invalid: dcsaudit's deliberately wrong credentials; valid: the configured ones "
        "(None: no identity sent)")
    run: int | None = Field(default=None, ge=1, description="max_associations: the counting run, from 1")
    index: int | None = Field(
        default=None, ge=1, description="max_associations: position among the associations held at once, from 1")
    called_ae: str
    calling_ae: str
    outcome: AssocOutcome
    reject: RejectTriple | None = None
    abort: AbortInfo | None = None
    error: str = ""
    contexts: list[PresentationContextResult] = Field(default_factory=list)
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    max_pdu_length: int | None = None
    positive_response_requested: bool | None = None
    user_identity_response: bool | None = Field(
        default=None, description="an A-ASSOCIATE-AC carried a User Identity AC sub-item (0x59)")
    user_identity_response_length: int | None = None
    echo_status: int | None = Field(default=None, description="C-ECHO-RSP status, 0 = success")
    released: bool | None = None
    tls: TlsSession | None = Field(default=None, description="the TLS version and suite the association ran over "
                                   "(DICOM over TLS only; None when no TLS handshake completed)")
    duration_ms: float = 0.0
    evidence: str | None = None
    retries: int = Field(default=0, description="fresh connections tried after a transient answer (PS3.8 §9.3.4 "
                         "rejected-transient, or an A-ABORT in answer to the request)")
    busy: bool = Field(default=False, description="the transient answer persisted through every retry: the product "
                       "was busy, so this attempt proves nothing about titles, identity or verification")
    retry_evidence: list[str] = Field(default_factory=list, description="evidence of the retried answers")

    @model_validator(mode="after")
    def _purpose_fields(self) -> AssociationAttempt:
        """The typed parts each purpose needs are present, and only where they mean something."""
        if self.purpose == "user_identity" and (self.user_identity_type is None or self.credentials is None):
            raise ValueError("a user_identity attempt names its user_identity_type and credentials")
        if (self.user_identity_type is None) != (self.credentials is None):
            raise ValueError("user_identity_type and credentials go together (both None: no identity sent)")
        if (self.purpose == "max_associations") != (self.run is not None and self.index is not None):
            raise ValueError("run and index are set exactly for max_associations attempts")
        return self

    @property
    def label(self) -> str:
        """Human-readable purpose for summaries, e.g. 'user_identity_2_invalid', 'max_associations_1_3'."""
        if self.purpose == "user_identity":
            return f"user_identity_{self.user_identity_type}_{self.credentials}"
        if self.purpose == "max_associations":
            return f"max_associations_{self.run}_{self.index}"
        return self.purpose

    @property
    def transient(self) -> bool:
        """A-ASSOCIATE-RJ with result 2 (rejected-transient) or an A-ABORT instead of an answer."""
        return (self.outcome == "rejected" and self.reject is not None and self.reject.result == 2) \
            or self.outcome == "aborted"

    @property
    def title_reject(self) -> bool:
        """Rejected by the service user for an AE title (PS3.8 §9.3.4: reasons 3 and 7)."""
        return self.outcome == "rejected" and self.reject is not None and self.reject.source == 1 \
            and self.reject.reason in (3, 7)

    @property
    def refused(self) -> bool:
        """A definite refusal: a reject or abort that persisted and is not the product being busy."""
        return self.outcome in ("rejected", "aborted") and not self.busy


# How the acceptor answered one identity probe, normalised for the classifier.
IdentityAnswer = Literal[
    "accepted_with_response",  # A-ASSOCIATE-AC carrying a User Identity AC sub-item (0x59)
    "accepted",  # A-ASSOCIATE-AC without 0x59 (PS3.7 D.3.3.7 allows it for a checked identity)
    "refused",  # A-ASSOCIATE-RJ (or A-ABORT) that persisted and is not the product being busy
    "title_refused",  # refused for its AE titles (1, 1, 3) / (1, 1, 7): says nothing about identity
    "busy",  # rejected-transient / aborted through every retry
    "no_answer",  # closed, timeout, TLS failure, protocol error
]

RejectCoding = Literal["conformant", "transient", "non_standard", "none"]

# What the evidence proves about one User-Identity-Type (PS3.7 D.3.3.7, PS3.15 B.4–B.7).
IdentityClass = Literal[
    "supported",  # invalid credentials refused and valid ones accepted: the type is checked
    "accepted_unchecked",  # invalid credentials accepted with a positive response, or where no identity is refused
    "not_checked",  # invalid credentials accepted exactly like no identity at all: the type is ignored
    "refused",  # even the configured valid credentials were refused
    "undetermined",  # the wire cannot tell; ``reason`` says why
    "not_tested",  # not probed; ``reason`` says why
]


class IdentityTypeResult(Model):
    """The verdict on one User-Identity-Type and the answers it was derived from."""

    classification: IdentityClass = "not_tested"
    reason: str = ""
    without_identity: IdentityAnswer | None = None
    invalid: IdentityAnswer | None = None
    valid: IdentityAnswer | None = None
    positive_response_missing: bool = Field(
        default=False, description="a positive response was requested and the accepted valid identity got no 0x59")
    evidence: list[str] = Field(default_factory=list, description="the attempts the verdict is derived from")


def _all_not_tested() -> dict[str, IdentityTypeResult]:
    return {str(t): IdentityTypeResult(reason="user identity not probed") for t in range(1, 6)}


class UserIdentityResult(Model):
    """User Identity Negotiation as acceptor (PS3.7 D.3.3.7, PS3.2 Table N.8-9), one verdict per type."""

    types: dict[str, IdentityTypeResult] = Field(default_factory=_all_not_tested)
    enforced: bool | None = Field(default=None, description="an association without identity is refused for that "
                                  "reason while a valid identity is accepted (None: undetermined)")
    enforced_reason: str = ""
    enforced_evidence: list[str] = Field(default_factory=list)
    reject_triples: dict[str, RejectTriple] = Field(
        default_factory=dict, description="type -> triple of the rejection of invalid credentials")
    reject_coding: RejectCoding = Field(
        default="none", description="PS3.7 D.3.3.7.3 wants (1, 2, x): rejected-permanent by the ACSE provider")
    notes: list[str] = Field(default_factory=list)


class MeasuredTimeout(Model):
    """A timer measured on the wire (PS3.8 §9.1.5 ARTIM, association request, idle association)."""

    seconds: float | None = Field(default=None, description="time until the peer closed or aborted")
    cap_seconds: float = Field(description="the measurement gave up after this long")
    exceeded_cap: bool = False
    ended_by: Literal["close", "abort", "release", "reject", "data", "none", "error"] = "none"
    evidence: str | None = None


class ApplicationEntity(Model):
    ae_title: str
    host: str
    port: int
    tls: bool
    verification: bool | None = None
    accepts_any_called_ae: bool | None = None
    accepts_any_calling_ae: bool | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    max_pdu_length: int | None = None
    user_identity: UserIdentityResult = Field(default_factory=UserIdentityResult)
    artim_seconds: float | None = None
    max_associations: int | None = None
    evidence: list[str] = Field(default_factory=list)
    busy_retries: int = Field(default=0, description="retries after transient answers over all attempts")
    reference_evidence: str | None = Field(
        default=None, description="the accepted association that implementation identity and contexts come from")
    # Details beyond the contract.
    configured: bool = Field(default=True, description="listed in the config (False: found by identification)")
    calling_ae_title: str = ""
    error: str | None = Field(default=None, description="why the AE could not be audited (None: it could)")
    implementation: str | None = Field(default=None, description="implementation recognised from the UID root")
    called_ae_reject: RejectTriple | None = None
    calling_ae_reject: RejectTriple | None = None
    default_called_aes_accepted: list[str] = Field(default_factory=list)
    default_calling_aes_accepted: list[str] = Field(default_factory=list)
    presentation_contexts: list[PresentationContextResult] = Field(default_factory=list)
    unauthenticated_query_retrieve: list[str] = Field(
        default_factory=list, description="Q/R or worklist SOP classes accepted without user identity")
    timeouts: dict[str, MeasuredTimeout] = Field(
        default_factory=dict, description="artim, association_request, idle_association")
    max_associations_reached_cap: bool | None = None
    max_associations_reject: RejectTriple | None = None
    max_associations_evidence: list[str] = Field(default_factory=list)
    max_associations_note: str = ""
    attempts: list[AssociationAttempt] = Field(default_factory=list)
    associations_used: int = 0
    duration_ms: float = 0.0

    def title_measured(self) -> bool:
        """The title is the product's own as measured: called and accepted (the reference association) while a
        random Called AE Title was refused. Nothing else shows it: an A-ASSOCIATE-AC returns the Called AE Title
        unchecked (PS3.8 §9.3.3), and a random title refused with (1, 1, 7) says nothing of a title that was
        refused too."""
        return self.accepts_any_called_ae is False and self.reference_evidence is not None

    def label(self) -> str:
        """How reports name this AE: its title where the title names it (measured, or listed in the
        deployment's configuration), else host:port. A title identification only guessed, on a product that
        accepts any Called AE Title (or was not asked), names nothing the product holds."""
        return self.ae_title.strip() if self.configured or self.title_measured() else f"{self.host}:{self.port}"


class TlsOffer(Model):
    """What a TLS client offered in its ClientHello, and what was negotiated (RFC 8446 §4.1.2)."""

    versions: list[str] = Field(default_factory=list)
    cipher_suites: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    signature_algorithms: list[str] = Field(default_factory=list)
    server_name: str | None = None
    negotiated_version: str | None = None
    negotiated_cipher: str | None = None
    handshake_error: str | None = None
    client_certificate: dict[str, str] | None = Field(
        default=None, description="subject, issuer, not_after, sha256 of a client certificate, if one was sent")


class Initiator(Model):
    """An association captured by ``dcsaudit listen`` (the product as initiator)."""

    calling_ae: str
    called_ae: str
    peer: str
    evidence: list[str] = Field(default_factory=list)
    port: int = 0
    tls: bool = False
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    implementation: str | None = None
    max_pdu_length: int | None = None
    proposed_contexts: list[PresentationContextResult] = Field(default_factory=list)
    user_identity_type: int | None = None
    positive_response_requested: bool | None = None
    user_identity_primary_length: int | None = Field(
        default=None, description="length of the primary field (the value itself is not stored for types 2-5)")
    username: str | None = Field(default=None, description="the username of types 1 and 2 (never the passcode)")
    tls_offer: TlsOffer | None = None
    served_certificate: ServedCertificate | None = Field(
        default=None, description="listen --tls-cert-tests: the server certificate served on this connection and "
        "whether the product went on with it")
    services: list[str] = Field(default_factory=list, description="DIMSE operations received, e.g. C-ECHO")
    stored_instances: int = 0
    outcome: str = "accepted"
    errors: list[str] = Field(
        default_factory=list, description="what was wrong on the wire (malformed A-ASSOCIATE-RQ, PDU over the "
        "listener's limit, PDUs after the association ended), each answered by an A-ASSOCIATE-RJ or A-ABORT")
