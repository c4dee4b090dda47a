"""The rest-hook channel: which endpoints a Subscription may name (resolved addresses checked, the allow-list's
prefixes matched at a boundary) and the POST of one notification to a real subscriber on loopback (headers as
given, the signature, a redirect not followed, a closed port)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable

import httpx
import pytest

from sis2fhir.deliver.rest_hook import EndpointRefused, check_endpoint, check_headers, post_notification
from tests.support.subscriber import Subscriber


def resolving_to(*addresses: str) -> Callable[[str, int], list[str]]:
    """A resolver answering these addresses for any host (no DNS in the test)."""
    return lambda host, port: list(addresses)


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.0.0.5", "172.16.1.1", "192.168.0.9", "169.254.169.254", "::1", "fe80::1", "0.0.0.0"]
)
def test_an_https_endpoint_resolving_to_an_internal_address_is_refused(address: str) -> None:
    with pytest.raises(EndpointRefused, match="loopback, private, link-local or reserved"):
        check_endpoint("https://hooks.example.org/x", [], resolving_to(address))


def test_one_internal_address_among_public_ones_is_enough_to_refuse() -> None:
    with pytest.raises(EndpointRefused):
        check_endpoint("https://hooks.example.org/x", [], resolving_to("93.184.216.34", "10.0.0.1"))


def test_a_public_https_endpoint_is_accepted() -> None:
    check_endpoint("https://hooks.example.org/x", [], resolving_to("93.184.216.34", "2606:2800:220:1::1"))


def test_plain_http_needs_the_allow_list_and_the_prefix_matches_at_a_boundary() -> None:
    with pytest.raises(EndpointRefused, match="must be https"):
        check_endpoint("http://hooks.example.org/x", [], resolving_to("93.184.216.34"))
    allowed = ["http://127.0.0.1"]
    check_endpoint("http://127.0.0.1:8080/hook", allowed, resolving_to("127.0.0.1"))
    check_endpoint("http://127.0.0.1/hook", allowed, resolving_to("127.0.0.1"))
    with pytest.raises(EndpointRefused):
        check_endpoint("http://127.0.0.1.evil.example/hook", allowed, resolving_to("127.0.0.1"))


def test_an_unresolvable_host_or_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(EndpointRefused, match="cannot be resolved"):
        check_endpoint("https://no-such-host.invalid/x", [])
    with pytest.raises(EndpointRefused, match="credentials"):
        check_endpoint("https://user:pw@hooks.example.org/x", [], resolving_to("93.184.216.34"))


def test_channel_headers_are_name_value_lines_and_not_the_servers_own() -> None:
    assert check_headers(["Authorization: Bearer abc", "X-Team:  peds "]) == [
        "Authorization: Bearer abc",
        "X-Team: peds",
    ]
    for bad in (["no colon"], ["Content-Type: text/plain"], ["X-A: b\r\nX-B: c"]):
        with pytest.raises(ValueError):
            check_headers(bad)


def test_the_post_sends_the_headers_and_signature_and_does_not_follow_a_redirect() -> None:
    subscriber = Subscriber().start()
    try:

        async def send() -> tuple[bool, str]:
            async with httpx.AsyncClient(trust_env=False) as client:
                answer = await post_notification(
                    client, subscriber.url, b'{"resourceType":"Bundle"}', ["Authorization: Bearer t"], 5, "s" * 20
                )
                return answer.ok, answer.error

        assert asyncio.run(send()) == (True, "")
        got = subscriber.received[0]
        assert got.header("Authorization") == "Bearer t"
        assert got.header("Content-Type") == "application/fhir+json"
        stamp, mac = (p.split("=", 1)[1] for p in (got.header("X-Sis2fhir-Signature") or "").split(","))
        assert mac == hmac.new(b"s" * 20, stamp.encode() + b"." + got.body, hashlib.sha256).hexdigest()
        subscriber.status, subscriber.location = 307, subscriber.url + "/elsewhere"
        ok, error = asyncio.run(send())
        assert not ok and "redirects are not followed" in error
        assert [r.path for r in subscriber.received] == ["/notify", "/notify"]  # the Location was not asked
        subscriber.stop()
        ok, error = asyncio.run(send())
        assert not ok and "could not be reached" in error
    finally:
        subscriber.stop()
