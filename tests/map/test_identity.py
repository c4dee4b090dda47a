"""Resource ids: the same uuid5 text as the uuid module gives, for every kind of name (ids already issued must not
change)."""

from __future__ import annotations

import hashlib
import random
import uuid

from sis2fhir.map import identity
from sis2fhir.map.identity import resource_id

NAMESPACE = uuid.UUID("6f0d6d52-3a4e-5b8e-9a52-5f1c2b7d0a11")


def _uuid5(system: str, value: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{system}|{value}"))


def test_resource_id_is_uuid5_of_system_and_value() -> None:
    rng = random.Random(12)
    alphabet = "abcXYZ0189-_.|/: éüß漢字🙂\t"
    names = [
        ("", ""),
        ("|", "|"),
        ("https://sis.example.org/ids/student-sourced-id", "stu-000001"),
        ("http://hl7.org/fhir/sid/us-npi", "1234567893"),
        ("urn:oid:2.16.840.1.113883.4.1", "x" * 5000),
    ]
    names += [
        ("".join(rng.choices(alphabet, k=rng.randint(0, 60))), "".join(rng.choices(alphabet, k=rng.randint(0, 60))))
        for _ in range(20_000)
    ]
    for system, value in names:
        assert resource_id(system, value) == _uuid5(system, value), (system, value)


def test_every_variant_digit_is_spelt_as_uuid_spells_it() -> None:
    seen: set[str] = set()
    n = 0
    while len(seen) < 16:  # the 17th hex digit of the SHA-1 takes each of its 16 values
        value = f"v{n}"
        seen.add(hashlib.sha1(NAMESPACE.bytes + f"s|{value}".encode()).hexdigest()[16])
        assert resource_id("s", value) == _uuid5("s", value)
        n += 1
    assert {resource_id("s", f"v{i}")[19] for i in range(n)} == set("89ab")


def test_the_id_cache_is_bounded() -> None:
    assert identity._uuid5.cache_info().maxsize == identity.ID_CACHE
    for i in range(identity.ID_CACHE + 100):
        resource_id("bound", str(i))
    assert identity._uuid5.cache_info().currsize <= identity.ID_CACHE
