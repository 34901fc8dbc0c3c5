"""dcsaudit: measure the security sections of a DICOM Conformance Statement."""

__version__ = "0.1.0"
