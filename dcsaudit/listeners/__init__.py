"""Servers dcsaudit runs itself: the product is the client (``dcsaudit listen``, the syslog collector).

Apart from probes, which are the clients that go to the product.
"""
