"""Slows down password guessing at the page's login: after a few wrong passwords in a row from
one client address, each further try from it must wait, twice as long each time (up to
MAX_WAIT_S); a try made before its time is refused in one sentence, unchecked."""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

FREE_FAILURES = 5  # wrong passwords in a row that cost nothing: people mistype
FIRST_WAIT_S = 1.0  # the wait after the first failure past those, doubled after each
MAX_WAIT_S = 300.0
FORGET_AFTER_S = 3600.0  # an address with no failure for this long starts afresh
MAX_ADDRESSES = 10_000  # addresses remembered at once, so a flood of them cannot fill memory
# What the login page says, under its title, before anyone types.
LOGIN_NOTE = (
    f"After {FREE_FAILURES} wrong passwords in a row, each further try from the same address "
    f"must wait longer: {FIRST_WAIT_S:g} s, then twice as long each time, up to "
    f"{MAX_WAIT_S / 60:g} minutes."
)


@dataclass
class _Record:
    failures: int = 0
    last_try: float = 0.0


class FailedLogins:
    """Failed logins per client address (IPv6 by its /64 network, which one machine commonly
    holds whole). A try counts as failed from its start, so tries sent at once cannot all slip
    through before the first answer; a success forgets the address."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._records: dict[str, _Record] = {}

    def wait_s(self, address: str) -> float:
        """Seconds before `address` may try again (0 if it may now)."""
        record = self._records.get(_key(address))
        if record is None or record.failures < FREE_FAILURES:
            return 0.0
        delay = min(FIRST_WAIT_S * 2 ** (record.failures - FREE_FAILURES), MAX_WAIT_S)
        return max(0.0, record.last_try + delay - self.clock())

    def tried(self, address: str) -> None:
        """A try was let through: it counts as failed until `succeeded` says otherwise."""
        now = self.clock()
        key = _key(address)
        record = self._records.pop(key, None) or _Record()
        if now - record.last_try > FORGET_AFTER_S:
            record = _Record()
        record.failures += 1
        record.last_try = now
        self._records[key] = record  # re-inserted: the dict stays ordered by last try
        if len(self._records) > MAX_ADDRESSES:
            del self._records[next(iter(self._records))]  # the longest quiet address

    def succeeded(self, address: str) -> None:
        self._records.pop(_key(address), None)


def refusal(wait_s: float) -> str:
    """The sentence a try made too early gets."""
    seconds = math.ceil(wait_s)
    return (
        f"Too many wrong passwords from this address: wait {seconds} s, then try again "
        "(each wrong password from here makes the next wait longer)."
    )


def _key(address: str) -> str:
    """Whom an address is counted as: itself, an IPv4 address written as IPv6 as the IPv4
    one, any other IPv6 address as its /64 network."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:  # not an address (a Unix socket's peer): counted by what it is
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
