"""Waiting on many sockets at once, for the listeners' threads."""

from __future__ import annotations

import select


def ready(fds: list[int], write: bool, timeout: float) -> list[int]:
    """The fds ready to read (or write) within ``timeout`` s. poll(), not select(): a listener holding
    more than 1,024 sockets gets descriptors select() cannot take."""
    p = select.poll()
    mask = select.POLLOUT if write else select.POLLIN
    for fd in fds:
        p.register(fd, mask | select.POLLERR | select.POLLHUP)
    return [fd for fd, _ev in p.poll(max(0, int(timeout * 1000)))]
