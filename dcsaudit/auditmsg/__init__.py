"""DICOM audit messages: RFC 5424 parsing, PS3.15 A.5 validation, A.5.3 rules, trigger correlation."""

from dcsaudit.auditmsg.classify import classify

__all__ = ["classify"]
