"""Delivers an exam's outbox: C-STORE, Storage Commitment requests, MPPS messages.

Each pass goes over the outbox's destinations. A destination whose backoff has not run out
is skipped; otherwise one association carries a batch of due objects (every SOP class of the
batch proposed in the file's own transfer syntax and both uncompressed little-endian ones),
then, for a destination that commits, one N-ACTION asking for commitment of what is sent
and not yet committed. MPPS messages go to the MPPS peer one at a time, in queue order.

Failures: a destination that cannot be reached (no association, a dropped link) backs off
exponentially (``retry_initial_s`` doubling to ``retry_max_s``, each wait drawn from 50-100 %
of that: jitter, so rooms do not retry in step); an object or message the peer refuses backs
off on its own. Nothing is given up: ``dicom status`` shows the last error and next try.

Delivery is at least once: a crash between the peer's success answer and the outbox's record
of it sends that object again, and the SOP Instance UID makes the second store a no-op at
the PACS (docs/dicom.md).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    StorageCommitmentPushModel,
)

from . import commitment
from .outbox import Outbox
from .outbox_db import MPPS, STORE, Pending, Target
from .settings import OutboxSettings

log = logging.getLogger(__name__)
# pynetdicom logs every association, and a refused connection as an ERROR at each retry;
# the outbox records each failure and our own log says it once per outage.
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

#: crash-test hook: SIGKILL right after the N-th success answer (C-STORE, N-CREATE, N-SET),
#: before the outbox records it: the worst moment for duplicates
CRASH_ENV = "FLUOROCTL_DICOM_CRASH_AFTER"
#: C-STORE / N-CREATE / N-SET statuses that mean "stored" (success and warnings, PS3.4 B.2.3)
_OK = {0x0000, 0xB000, 0xB006, 0xB007}
#: N-CREATE: the instance exists (a re-send after a crash); N-SET: already final (ditto)
_ALREADY_CREATED = 0x0111
_NO_LONGER_UPDATABLE = 0xA710


def backoff_s(failures: int, settings: OutboxSettings, rng: random.Random) -> float:
    """How long to wait after the ``failures``-th consecutive failure (≥ 1)."""
    full = min(settings.retry_max_s, settings.retry_initial_s * 2 ** max(failures - 1, 0))
    return float(full * rng.uniform(0.5, 1.0))


class Sender:
    """Sends one exam folder's outbox; :meth:`drain` in the foreground or :meth:`start` a
    background thread. One connection to the outbox per thread it runs in."""

    def __init__(
        self,
        folder: Path,
        settings: OutboxSettings,
        calling_ae: str,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = folder
        self.settings = settings
        self.calling_ae = calling_ae
        self._rng = rng or random.Random()
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: commitment.CommitmentListener | None = None
        self._answers = 0
        self._crash_after = _crash_after()
        #: in :meth:`drain`, whose caller reports what is left itself
        self._draining = False
        #: why commitment reports cannot arrive on their own association (None: they can)
        self.listener_problem: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def wake(self) -> None:
        """Something was queued: look now rather than at the next timed pass."""
        self._wake.set()

    def listen(self, outbox: Outbox) -> None:
        """Start the commitment listener when a destination commits and a port is set."""
        if self._listener is not None or not any(t.commitment for t in outbox.targets(STORE)):
            return
        port = self.settings.commitment_port
        if port is None:
            self.listener_problem = (
                "no dicom.outbox.commitment_port: commitment reports are accepted only on "
                "the request's own association"
            )
            return
        listener = commitment.CommitmentListener(self.folder, self.calling_ae, port, self.wake)
        self.listener_problem = listener.start()
        if self.listener_problem is None:
            self._listener = listener
        else:
            log.warning("%s", self.listener_problem)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dicom-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the background thread after its current association."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    def _run(self) -> None:
        outbox = Outbox.in_folder(self.folder)
        try:
            self.listen(outbox)
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    self.run_once(outbox)
                except Exception:  # the exam must not notice: try again at the next pass
                    log.exception("DICOM sender pass failed")
                self._wake.wait(self._idle_s(outbox))
        finally:
            outbox.close()

    def drain(self, timeout_s: float) -> int:
        """Send until everything is delivered (committed where asked) or ``timeout_s``
        passes; returns what is still undelivered. Runs in the calling thread."""
        deadline = time.monotonic() + timeout_s
        self._draining = True
        outbox = Outbox.in_folder(self.folder)
        try:
            self.listen(outbox)
            while True:
                self._wake.clear()
                self.run_once(outbox)
                left = outbox.undelivered()
                remaining = deadline - time.monotonic()
                if left == 0 or remaining <= 0:
                    return left
                self._wake.wait(min(remaining, self._idle_s(outbox)))
        finally:
            outbox.close()
            if self._thread is None and self._listener is not None:
                self._listener.stop()
                self._listener = None

    def _idle_s(self, outbox: Outbox) -> float:
        """Until the next retry is due; short while commitment reports are awaited."""
        wake = outbox.next_wake()
        if wake is None:
            return 0.2 if outbox.undelivered() else 1.0
        return min(max(wake - self._clock(), 0.05), 1.0)

    # -- one pass -----------------------------------------------------------------------------
    def run_once(self, outbox: Outbox) -> None:
        now = self._clock()
        for target in outbox.targets():
            if target.next_try > now:
                continue
            if target.role == MPPS:
                self._send_messages(outbox, target)
            else:
                self._send_objects(outbox, target)

    def _send_objects(self, outbox: Outbox, target: Target) -> None:
        now = self._clock()
        due = outbox.due_objects(target.name, now, self.settings.batch)
        to_commit = (
            outbox.to_commit(target.name, now, self.settings.commitment_timeout_s)
            if target.commitment
            else []
        )
        if not due and not to_commit:
            return
        unreachable = _unreachable(target)
        if unreachable:
            self._down(outbox, target, unreachable)
            return
        ae = self._ae(target)
        for sop_class, syntaxes in _contexts(due).items():
            ae.add_requested_context(sop_class, syntaxes)
        if target.commitment:
            ae.add_requested_context(StorageCommitmentPushModel)
        handlers: list[Any] = [
            (evt.EVT_N_EVENT_REPORT, commitment.report_handler(self.folder, self.wake))
        ]
        assoc = ae.associate(target.host, target.port, ae_title=target.ae, evt_handlers=handlers)
        if not assoc.is_established:
            self._down(outbox, target, _refusal(assoc))
            return
        try:
            for pending in due:
                if not assoc.is_established:
                    self._down(outbox, target, "association lost while sending")
                    return
                self._store(outbox, target, assoc, pending)
            outbox.destination_up(target.name)
            if target.commitment:
                self._ask_commitment(outbox, target, assoc)
        finally:
            if assoc.is_established:
                assoc.release()

    def _store(self, outbox: Outbox, target: Target, assoc: Any, pending: Pending) -> None:
        path = self.folder / pending.file
        try:
            status = assoc.send_c_store(path)
        except (OSError, ValueError) as exc:  # the file went, or no context fits it
            self._object_failed(outbox, target, pending, f"not sent: {exc}")
            return
        code = getattr(status, "Status", None)
        if code in _OK:
            self._answered()
            outbox.mark_sent(pending.sop_instance_uid, target.name, self._clock())
        elif code is None:
            self._object_failed(outbox, target, pending, "no answer to C-STORE")
        else:
            self._object_failed(outbox, target, pending, f"C-STORE refused: status 0x{code:04X}")

    def _ask_commitment(self, outbox: Outbox, target: Target, assoc: Any) -> None:
        refs = outbox.to_commit(target.name, self._clock(), self.settings.commitment_timeout_s)
        if not refs or not assoc.is_established:
            return
        transaction = commitment.new_transaction_uid()
        uids = [uid for _, uid in refs]
        # Recorded before the N-ACTION leaves: the PACS may send its report on another
        # association before this one returns, and a report for a transaction we have not
        # recorded yet would find no rows and leave the objects "sent" for good.
        outbox.commitment_asked(target.name, uids, transaction, self._clock())
        status, _reply = assoc.send_n_action(
            commitment.request_dataset(refs, transaction),
            commitment.REQUEST_COMMITMENT,
            StorageCommitmentPushModel,
            commitment.PUSH_MODEL_INSTANCE,
        )
        code = getattr(status, "Status", None)
        if code != 0x0000:
            outbox.commitment_withdrawn(target.name, uids, transaction)
            log.warning("%s: storage commitment request refused (status %s)", target.name, code)

    def _send_messages(self, outbox: Outbox, target: Target) -> None:
        message = outbox.due_message(target.name, self._clock())
        if message is None:
            return
        unreachable = _unreachable(target)
        if unreachable:
            self._down(outbox, target, unreachable)
            return
        ae = self._ae(target)
        ae.add_requested_context(ModalityPerformedProcedureStep)
        assoc = ae.associate(target.host, target.port, ae_title=target.ae)
        if not assoc.is_established:
            self._down(outbox, target, _refusal(assoc))
            return
        try:
            while message is not None and assoc.is_established:
                if not self._send_message(outbox, assoc, message):
                    return
                message = outbox.due_message(target.name, self._clock())
            outbox.destination_up(target.name)
        finally:
            if assoc.is_established:
                assoc.release()

    def _send_message(self, outbox: Outbox, assoc: Any, message: Any) -> bool:
        """Send one MPPS message; False when it failed (later ones wait for it)."""
        ds = Dataset.from_json(message.dataset)
        if message.kind == "n-create":
            status, _ = assoc.send_n_create(ds, message.sop_class_uid, message.sop_instance_uid)
            already = _ALREADY_CREATED
        else:
            status, _ = assoc.send_n_set(ds, message.sop_class_uid, message.sop_instance_uid)
            already = _NO_LONGER_UPDATABLE
        code = getattr(status, "Status", None)
        now = self._clock()
        if code in _OK:
            self._answered()
            outbox.message_sent(message.id, now)
            return True
        if code == already:
            # Accepted before a crash cut off our record of it (the MPPS UID is this exam's
            # own), or closed at the RIS: either way, sending it again cannot change it.
            outbox.message_sent(message.id, now, note=f"peer had it (status 0x{code:04X})")
            return True
        error = "no answer" if code is None else f"refused: status 0x{code:04X}"
        delay = backoff_s(message.attempts + 1, self.settings, self._rng)
        outbox.message_failed(message.id, f"{message.kind} {error}", now + delay)
        return False

    def _answered(self) -> None:
        self._answers += 1
        if self._crash_after is not None and self._answers >= self._crash_after:
            os.kill(os.getpid(), signal.SIGKILL)  # crash tests: delivered, not yet recorded

    # -- failures -----------------------------------------------------------------------------
    def _down(self, outbox: Outbox, target: Target, error: str) -> None:
        failures = outbox.failures(target.name) + 1
        delay = backoff_s(failures, self.settings, self._rng)
        outbox.destination_down(target.name, error, self._clock() + delay)
        # The first failure warns a running exam; a foreground drain (`dicom flush`) says
        # what is left in its own one line, so it keeps these to -v.
        level = logging.WARNING if failures == 1 and not self._draining else logging.INFO
        log.log(level, "DICOM %s: %s; retrying (next in %.1f s)", target.name, error, delay)

    def _object_failed(self, outbox: Outbox, target: Target, pending: Pending, error: str) -> None:
        delay = backoff_s(pending.attempts + 1, self.settings, self._rng)
        outbox.mark_failed(pending.sop_instance_uid, target.name, error, self._clock() + delay)

    def _ae(self, target: Target) -> AE:
        ae = AE(ae_title=self.calling_ae)
        for attr in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
            setattr(ae, attr, target.timeout_s)
        return ae


def _contexts(due: Sequence[Pending]) -> dict[str, list[str]]:
    """Per SOP class, the transfer syntaxes to propose: the files' own first."""
    found: dict[str, list[str]] = {}
    for pending in due:
        syntaxes = found.setdefault(pending.sop_class_uid, [])
        for ts in (pending.transfer_syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            if ts not in syntaxes:
                syntaxes.append(ts)
    return found


def _unreachable(target: Target) -> str | None:
    """Why a TCP connection to ``target`` cannot be made (None: it can). pynetdicom reports
    a refused connection as an aborted association; an operator needs the difference."""
    try:
        with socket.create_connection((target.host, target.port), timeout=target.timeout_s):
            return None
    except OSError as exc:
        return f"cannot connect: {exc.strerror or exc}"


def _refusal(assoc: Any) -> str:
    if assoc.is_rejected:
        return "association rejected"
    if assoc.is_aborted:
        return "association aborted"
    return "cannot connect"


def _crash_after() -> int | None:
    text = os.environ.get(CRASH_ENV, "")
    return int(text) if text.isdigit() and int(text) > 0 else None
