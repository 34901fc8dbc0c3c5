"""TLS audit (issue 3)."""
