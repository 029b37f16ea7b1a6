"""Which webhook hosts count as the service's own network."""

from __future__ import annotations

import pytest

from email_sender.webhooks.addresses import resolves_local, written_local


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST.", "api.localhost", "127.0.0.1", "127.1", "2130706433",
     "0x7f000001", "0", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1",
     "[::1]", "::ffff:127.0.0.1", "fe80::1"],
)
def test_local_spellings(host: str) -> None:
    assert written_local(host)


@pytest.mark.parametrize("host", ["example.com", "93.184.216.34", "2606:2800:220:1::", "8.8.8.8"])
def test_outside_hosts(host: str) -> None:
    assert not written_local(host)


async def test_a_literal_outside_address_is_not_resolved() -> None:
    assert await resolves_local("8.8.8.8", 443) is False
    assert await resolves_local("127.1", 80) is True
