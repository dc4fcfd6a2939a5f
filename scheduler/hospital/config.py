"""The room file's ``dicom:`` section and ``procedures:`` map (docs/dicom.md).

::

    dicom:
      ae_title: FLUORO1                 # this modality's AE title (calling AE)
      uid_root: 1.2.826.0.1.3680043.10.1234   # the organisation's root; else 2.25 UUID UIDs
      destinations:                     # C-STORE targets, each its own queue
        - {ae: ORTHANC, host: 10.0.0.20, port: 4242, commitment: true}
      worklist: {ae: RIS, host: 10.0.0.30, port: 104}
      mpps: {ae: RIS, host: 10.0.0.30, port: 104}
    procedures:                         # requested procedure code -> protocol
      "74400": ivu-standard
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .settings import OutboxSettings

#: AE titles: 1-16 characters of the default character repertoire, no backslash, not all
#: spaces (PS3.5 §6.2, VR AE); leading/trailing spaces are not significant.
_AE_RE = re.compile(r"[ -\[\]-~]{1,16}")
#: A UID root: dotted numbers without leading zeros, room left for our suffixes (PS3.5 §9.1).
_UID_ROOT_RE = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
UID_ROOT_MAX = 24


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _ae(value: str) -> str:
    if not _AE_RE.fullmatch(value) or not value.strip():
        raise ValueError(
            f"AE title {value!r}: 1-16 printable ASCII characters, no backslash, not blank"
        )
    return value.strip()


AeTitle = Annotated[str, Field(description="DICOM AE title (1-16 characters)")]


class Peer(_Model):
    """A remote DICOM application entity."""

    ae: AeTitle
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    timeout_s: float = Field(default=10.0, gt=0, description="association and reply timeout")

    @field_validator("ae")
    @classmethod
    def _ae_ok(cls, value: str) -> str:
        return _ae(value)


class Destination(Peer):
    """A C-STORE destination (PACS, archive); each has its own queue."""

    commitment: bool = Field(
        default=False,
        description="ask for Storage Commitment (N-ACTION) and count an object archived only "
        "when the N-EVENT-REPORT confirms it",
    )


class DicomConfig(_Model):
    ae_title: AeTitle = "FLUOROCTL"
    uid_root: str | None = Field(
        default=None,
        description="the organisation's UID root (≤ 24 characters); without one, UIDs are "
        "2.25.<UUID> (PS3.5 §B.2)",
    )
    destinations: tuple[Destination, ...] = ()
    worklist: Peer | None = None
    mpps: Peer | None = None
    outbox: OutboxSettings = Field(
        default_factory=OutboxSettings,
        description="how the outbox sends: retry timing, the end-of-run wait, our Storage "
        "Commitment port (scheduler/hospital/settings.py)",
    )

    @field_validator("ae_title")
    @classmethod
    def _ae_title_ok(cls, value: str) -> str:
        return _ae(value)

    @field_validator("uid_root")
    @classmethod
    def _root(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _UID_ROOT_RE.fullmatch(value) or len(value) > UID_ROOT_MAX:
            raise ValueError(
                f"uid_root {value!r}: dotted numbers without leading zeros, at most "
                f"{UID_ROOT_MAX} characters (the rest of the 64 is for the exam's suffixes)"
            )
        return value


#: Requested Procedure Code Value -> protocol (a file or a shipped protocol's name).
Procedures = dict[str, str]
