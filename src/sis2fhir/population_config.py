"""The `population:` section of the configuration: the smallest cell `sis2fhir population` and `sis2fhir evaluate`
publish, and the written agreement `evaluate` runs under. Re-exported by sis2fhir.config as `Settings.population`.

```yaml
population:
  min_cell: 10            # any count below it (and any rate computed from one) is withheld
  agreement: "FERPA studies exception, 34 CFR 99.31(a)(6); agreement 2026-014 with the county health department"
  bootstrap_replicates: 2000
  seed: 13
```
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

AGREEMENT_SETTING = "population.agreement"


class PopulationSettings(BaseModel):
    """De-identified, aggregate outputs (docs/population.md)."""

    model_config = ConfigDict(extra="forbid")
    # counts of students below this are withheld, with complementary suppression (population/suppress.py)
    min_cell: int = Field(10, ge=2, le=1000)
    # the written agreement cohort files are used under (e.g. the FERPA studies exception, 34 CFR 99.31(a)(6), and
    # the agreement's number); `sis2fhir evaluate` refuses to run without it and records it with the run
    agreement: str = ""
    bootstrap_replicates: int = Field(2000, ge=100, le=100_000)  # evaluate: the 95 % interval's resamples
    seed: int = 13  # evaluate: the bootstrap's seed (the same inputs give the same interval)

    @field_validator("agreement")
    @classmethod
    def _stripped(cls, v: str) -> str:
        return v.strip()
