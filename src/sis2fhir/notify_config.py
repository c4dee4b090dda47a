"""The `notify:` section of the configuration: which transitions are events (transitions.py), per recipient, and how
Subscription notifications are delivered (`sis2fhir serve`). Re-exported by sis2fhir.config as `Settings.notify`.

```yaml
notify:
  allowed_endpoints: ["http://127.0.0.1"]   # URL prefixes allowed besides public https endpoints
  triggers:                                 # every recipient's, unless `recipients:` says otherwise
    consecutive_days: 3
  recipients:
    "1234567893": {early_warning: false}    # by recipient identifier, as in consents.csv recipientOrganization
```
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TriggerSettings(BaseModel):
    """The triggers a recipient's subscriptions may use (a subscription narrows them further)."""

    model_config = ConfigDict(extra="forbid")
    into_chronic: bool = True  # the policy's threshold crossed upward (not while too few days in membership)
    back_below: bool = True  # chronic, then no longer
    tier_changed: bool = True
    consecutive_absences: bool = True
    early_warning: bool = True  # not chronic yet, but projected to be by the year's end
    consecutive_days: int = Field(3, ge=2, le=60)  # school days absent in a row (DASH: 3)


class NotifySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # URL prefixes a subscription endpoint may have besides public https ones (loopback, private, plain http)
    allowed_endpoints: list[str] = Field(default_factory=list)
    triggers: TriggerSettings = Field(default_factory=TriggerSettings)
    recipients: dict[str, TriggerSettings] = Field(default_factory=dict)  # by recipient identifier
    early_warning_window_days: int = Field(20, ge=5, le=90)  # school days whose rate is projected to the year's end
    poll_seconds: float = Field(1.0, gt=0)  # how often `serve` looks for new events and due notifications
    timeout_seconds: float = Field(10.0, gt=0)  # per notification request
    max_age_hours: float = Field(72.0, gt=0)  # retried this long, then the subscription is in `error`
    initial_backoff_seconds: float = Field(5.0, gt=0)
    max_backoff_seconds: float = Field(600.0, gt=0)
    # subscriptions sent to at the same time (one slow or dead endpoint holds one of these, never the others)
    max_concurrent_deliveries: int = Field(32, ge=1, le=1000)

    def triggers_for(self, recipient: str) -> TriggerSettings:
        """The triggers of a recipient: its own entry, else the default."""
        return self.recipients.get(recipient, self.triggers)

    def consecutive_days_wanted(self) -> set[int]:
        """Every streak length some recipient wants events for (the transitions judge each)."""
        every = [self.triggers, *self.recipients.values()]
        return {t.consecutive_days for t in every if t.consecutive_absences}
