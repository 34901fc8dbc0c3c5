"""Servers dcsaudit runs itself: the product is the client (``dcsaudit listen``, the syslog collector).

Apart from probes, which are the clients that go to the product.

- :mod:`dcsaudit.listeners.dicom_scp`: the DICOM SCP of ``dcsaudit listen`` (the product as initiator).
- :mod:`dcsaudit.listeners.syslog_collector`: the SYSLOG-TLS/UDP collector (the product as audit-trail
  originator); its framing rules are :mod:`dcsaudit.auditmsg.framing`.
"""
