"""How the DICOM outbox sends: the room file's ``dicom: outbox:`` block (docs/dicom.md).

::

    dicom:
      outbox:
        commitment_port: 11112    # where PACS sends Storage Commitment reports (N-EVENT-REPORT)
        wait_s: 5                 # at the end of a run, wait this long for delivery
        retry_initial_s: 1        # first retry after a failure; doubles per failure ...
        retry_max_s: 60           # ... up to this (each wait randomised to 50-100 %)
        batch: 64                 # objects sent over one association
        commitment_timeout_s: 60  # ask again when no report came within this
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OutboxSettings(BaseModel):
    """Delivery timing and our Storage Commitment listener; every field has a default."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    commitment_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="port our AE listens on for Storage Commitment reports; PACS must know "
        "our AE title at this host and port (a report on the N-ACTION's own association is "
        "accepted too)",
    )
    wait_s: float = Field(
        default=5.0, ge=0, description="at the end of a run, how long to wait for delivery"
    )
    retry_initial_s: float = Field(default=1.0, gt=0, description="first retry delay")
    retry_max_s: float = Field(default=60.0, gt=0, description="longest retry delay")
    batch: int = Field(default=64, ge=1, le=1000, description="objects per association")
    commitment_timeout_s: float = Field(
        default=60.0, gt=0, description="ask for commitment again after this long unanswered"
    )
