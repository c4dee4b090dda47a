"""All fuzz variants of the example district, deterministic from a seed, and the fixed sample `make test` runs."""

from __future__ import annotations

import os
import random
from collections import defaultdict
from functools import cache

from tests.fuzz.district import District
from tests.fuzz.files import file_damage
from tests.fuzz.model import Variant
from tests.fuzz.options import config_variants, gate_variants, option_variants
from tests.fuzz.others import edfi_variants, path_variants, zip_variants
from tests.fuzz.rows import row_defects

SEED = 2026


def edfi_xml() -> bytes:
    """The Ed-Fi StudentAttendance.xml the generator writes for the example (same seed, positive style)."""
    from tests.fuzz.bases import generated

    return (generated().edfi / "StudentAttendance.xml").read_bytes()


@cache
def all_variants(seed: int = SEED) -> tuple[Variant, ...]:
    d = District()
    rng = random.Random(seed)
    found = [
        *file_damage(d, rng),
        *row_defects(d, rng),
        *zip_variants(),
        *path_variants(),
        *edfi_variants(edfi_xml(), d, rng),
        *config_variants(),
        *option_variants(),
        *gate_variants(d),
    ]
    ids = [v.id for v in found]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"variant ids must be unique: {sorted(dupes)}"
    return tuple(found)


def sample(variants: tuple[Variant, ...], seed: int = SEED) -> tuple[Variant, ...]:
    """A fixed sample across every kind: one variant per damaged file (file-damage, row-defect) and two of each
    other kind (zip, path, edfi, config, option, gate); about 30, never a heavy one."""
    groups: dict[str, list[Variant]] = defaultdict(list)
    for v in variants:
        if not v.heavy:
            groups["-".join(v.id.split("-")[:2]) if v.kind in ("file-damage", "row-defect") else v.kind].append(v)
    rng = random.Random(seed)
    chosen = {
        v.id
        for key, vs in sorted(groups.items())
        for v in rng.sample(vs, 1 if key.startswith(("file-", "row-")) else 2)
    }
    return tuple(v for v in variants if v.id in chosen)


def selected() -> tuple[Variant, ...]:
    """FUZZ=all: every variant (make fuzz); otherwise the fixed sample (make test, plain pytest)."""
    variants = all_variants()
    return variants if os.environ.get("FUZZ") == "all" else sample(variants)
