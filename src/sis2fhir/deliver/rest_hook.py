"""The rest-hook channel of a Subscription: which endpoints may be sent to, and the HTTP POST of one notification.

An endpoint must be https, unless it starts with a prefix of `notify.allowed_endpoints`; and the addresses its host
resolves to must all be public: loopback, private, link-local, multicast and reserved ones are refused unless
allow-listed (checked when the subscription is made and again before every send, so a name that is re-pointed at
an internal address is caught). Redirects are never followed: a 3xx is a failed delivery. The channel's headers
go as given; an optional HMAC-SHA256 signature (the subscriber's secret) goes in SIGNATURE_HEADER."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import httpx

FHIR_JSON: Final = "application/fhir+json"
SIGNATURE_HEADER: Final = "X-Sis2fhir-Signature"  # t=<unix seconds>,sha256=<hex HMAC of "<t>.<body>">
RESERVED_HEADERS: Final = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection"})
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
Resolver = Callable[[str, int], list[str]]


class EndpointRefused(ValueError):
    """An endpoint this server will not send to (the message says why; it names no secret)."""


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise EndpointRefused(f"the endpoint's host cannot be resolved ({e.__class__.__name__})") from None
    return sorted({str(info[4][0]) for info in infos})


def allow_listed(url: str, allowed: Sequence[str]) -> bool:
    """`url` starts with one of the prefixes, at a boundary (`http://127.0.0.1` does not allow
    `http://127.0.0.1.example.com`)."""
    for prefix in allowed:
        if url.startswith(prefix) and (prefix.endswith("/") or len(url) == len(prefix) or url[len(prefix)] in "/:?#"):
            return True
    return False


def check_endpoint(url: str, allowed: Sequence[str], resolver: Resolver = resolve) -> None:
    """EndpointRefused unless this server may POST notifications to `url` (see the module's rules)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise EndpointRefused("the endpoint is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointRefused("the endpoint must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise EndpointRefused("the endpoint must not carry credentials in the URL (send them as a channel header)")
    if parts.fragment:
        raise EndpointRefused("the endpoint must not have a fragment")
    if allow_listed(url, allowed):
        return
    if parts.scheme != "https":
        raise EndpointRefused("the endpoint must be https (or start with a prefix of notify.allowed_endpoints)")
    for address in resolver(parts.hostname, port or 443):
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            raise EndpointRefused(
                "the endpoint's host resolves to a loopback, private, link-local or reserved address; "
                "allow it in notify.allowed_endpoints if it is meant"
            )


def check_headers(headers: Sequence[str]) -> list[str]:
    """Channel headers as `Name: value`; ValueError naming the bad one by position (never its value)."""
    out = []
    for i, header in enumerate(headers):
        name, sep, value = header.partition(":")
        if not sep or not _HEADER_NAME.match(name.strip()) or "\r" in header or "\n" in header:
            raise ValueError(f"channel.header[{i}] is not a 'Name: value' HTTP header")
        if name.strip().lower() in RESERVED_HEADERS:
            raise ValueError(f"channel.header[{i}]: {name.strip()} is set by this server")
        out.append(f"{name.strip()}: {value.strip()}")
    return out


def signature(secret: str, body: bytes, at: int) -> str:
    mac = hmac.new(secret.encode(), str(at).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={at},sha256={mac}"


@dataclass(frozen=True, slots=True)
class HookAnswer:
    ok: bool
    status: int | None  # the HTTP status, none when no answer came
    error: str  # why it failed (no header or body of ours in it)


async def post_notification(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Sequence[str],
    timeout: float,
    secret: str | None = None,
) -> HookAnswer:
    """POST one notification Bundle; 2xx is delivered, anything else (a redirect too) failed."""
    sent = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    for header in headers:
        name, _, value = header.partition(":")
        sent[name.strip()] = value.strip()
    if secret:
        sent[SIGNATURE_HEADER] = signature(secret, body, int(time.time()))
    try:
        response = await client.post(url, content=body, headers=sent, timeout=timeout, follow_redirects=False)
    except httpx.TimeoutException:
        return HookAnswer(False, None, f"no answer within {timeout:g} s")
    except httpx.HTTPError as e:
        return HookAnswer(False, None, f"the endpoint could not be reached ({e.__class__.__name__})")
    if 200 <= response.status_code < 300:
        return HookAnswer(True, response.status_code, "")
    if 300 <= response.status_code < 400:
        return HookAnswer(False, response.status_code, f"HTTP {response.status_code}: redirects are not followed")
    return HookAnswer(False, response.status_code, f"HTTP {response.status_code}")
