"""The outbox on its own: idempotent enqueue, states, message order, commitment reports,
what counts as undelivered, and that a second process sees what the first committed."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from pydicom import Dataset

from scheduler.hospital import commitment
from scheduler.hospital.config import Destination, Peer
from scheduler.hospital.objects import DicomObject
from scheduler.hospital.outbox import Outbox
from scheduler.hospital.outbox_db import destination_name
from scheduler.hospital.sender import Sender, backoff_s
from scheduler.hospital.settings import OutboxSettings

PACS = Destination(ae="PACS", host="127.0.0.1", port=104, commitment=True)
ARCHIVE = Destination(ae="ARCH", host="127.0.0.1", port=105)
RIS = Peer(ae="RIS", host="127.0.0.1", port=106)


def obj(n: int) -> DicomObject:
    return DicomObject(
        file=f"{n:03d}-x.dcm",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.12.2",
        sop_instance_uid=f"1.2.3.{n}",
        transfer_syntax="1.2.840.10008.1.2.1",
        study_uid="1.2.3",
    )


def test_enqueue_is_idempotent_by_sop_instance_uid_and_one_row_per_destination(tmp_path):
    box = Outbox.in_folder(tmp_path)
    box.add_destinations([PACS, ARCHIVE])
    assert box.enqueue(obj(1)) is True
    assert box.enqueue(obj(1)) is False  # the same object again: no second row
    box.enqueue(obj(2))
    rows = box.rows()
    assert [(r.file, r.destination, r.state) for r in rows] == [
        ("001-x.dcm", "PACS@127.0.0.1:104", "queued"),
        ("001-x.dcm", "ARCH@127.0.0.1:105", "queued"),
        ("002-x.dcm", "PACS@127.0.0.1:104", "queued"),
        ("002-x.dcm", "ARCH@127.0.0.1:105", "queued"),
    ]
    assert box.undelivered() == 4


def test_a_destination_added_later_gets_every_object_already_queued(tmp_path):
    box = Outbox.in_folder(tmp_path)
    box.add_destinations([PACS])
    box.enqueue(obj(1))
    box.add_destinations([ARCHIVE])
    assert {r.destination for r in box.rows()} == {
        destination_name(PACS),
        destination_name(ARCHIVE),
    }


def test_sent_is_final_without_commitment_and_pending_with_it(tmp_path):
    box = Outbox.in_folder(tmp_path)
    box.add_destinations([PACS, ARCHIVE])
    box.enqueue(obj(1))
    box.mark_sent("1.2.3.1", destination_name(ARCHIVE), 10.0)
    box.mark_sent("1.2.3.1", destination_name(PACS), 10.0)
    assert box.undelivered() == 1  # PACS commits: sent is not the end there
    assert box.to_commit(destination_name(PACS), 11.0, 60.0) == [
        ("1.2.840.10008.5.1.4.1.1.12.2", "1.2.3.1")
    ]
    assert box.to_commit(destination_name(ARCHIVE), 11.0, 60.0) == []


def test_commitment_report_commits_and_sends_refused_objects_again(tmp_path):
    box = Outbox.in_folder(tmp_path)
    box.add_destinations([PACS])
    for n in (1, 2):
        box.enqueue(obj(n))
        box.mark_sent(f"1.2.3.{n}", destination_name(PACS), 10.0)
    box.commitment_asked(destination_name(PACS), ["1.2.3.1", "1.2.3.2"], "9.9.1", 11.0)
    assert box.to_commit(destination_name(PACS), 12.0, 60.0) == []  # asked, not yet due
    report = Dataset()
    report.TransactionUID = "9.9.1"
    ok, bad = Dataset(), Dataset()
    ok.ReferencedSOPClassUID = bad.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.2"
    ok.ReferencedSOPInstanceUID, bad.ReferencedSOPInstanceUID = "1.2.3.1", "1.2.3.2"
    bad.FailureReason = 0x0112
    report.ReferencedSOPSequence = [ok]
    report.FailedSOPSequence = [bad]
    box.close()
    assert commitment.apply_report(tmp_path, report) == 2
    box = Outbox.in_folder(tmp_path)
    states = {r.sop_instance_uid: r for r in box.rows()}
    assert states["1.2.3.1"].state == "committed"
    assert states["1.2.3.2"].state == "queued"
    assert "0x0112" in (states["1.2.3.2"].last_error or "")
    assert [p.sop_instance_uid for p in box.due_objects(destination_name(PACS), 12.0, 10)] == [
        "1.2.3.2"
    ]


def test_a_report_for_another_transaction_changes_nothing(tmp_path):
    box = Outbox.in_folder(tmp_path)
    box.add_destinations([PACS])
    box.enqueue(obj(1))
    box.mark_sent("1.2.3.1", destination_name(PACS), 10.0)
    box.commitment_asked(destination_name(PACS), ["1.2.3.1"], "9.9.2", 11.0)
    assert box.commitment_reported("9.9.1", ["1.2.3.1"], [], 12.0) == 0
    assert box.rows()[0].state == "sent"


def test_messages_go_in_order_a_later_one_waits_for_the_earlier(tmp_path):
    box = Outbox.in_folder(tmp_path)
    box.add_destinations([], RIS)
    ris = destination_name(RIS)
    assert box.enqueue_message("create", ris, "n-create", "1.2", "7.7", {})
    assert not box.enqueue_message("create", ris, "n-create", "1.2", "7.7", {})  # once per key
    box.enqueue_message("set", ris, "n-set", "1.2", "7.7", {})
    first = box.due_message(ris, 0.0)
    assert first is not None and first.kind == "n-create"
    box.message_failed(first.id, "refused", next_try=100.0)
    assert box.due_message(ris, 50.0) is None  # the N-SET does not overtake its N-CREATE
    again = box.due_message(ris, 100.0)
    assert again is not None and again.kind == "n-create"
    box.message_sent(again.id, 101.0)
    after = box.due_message(ris, 101.0)
    assert after is not None and after.kind == "n-set"


def test_a_failed_destination_backs_off_and_recovers(tmp_path):
    box = Outbox.in_folder(tmp_path)
    box.add_destinations([PACS])
    box.enqueue(obj(1))
    name = destination_name(PACS)
    assert box.destination_down(name, "cannot connect", 50.0) == 1
    assert box.destination_down(name, "cannot connect", 70.0) == 2
    assert box.next_wake() == 70.0
    assert box.rows()[0].last_error == "cannot connect"
    box.destination_up(name)
    assert box.failures(name) == 0 and box.next_wake() == 0.0


def test_backoff_doubles_up_to_the_cap_with_jitter():
    settings = OutboxSettings(retry_initial_s=1.0, retry_max_s=8.0)
    rng = random.Random(1)
    for failures, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        waits = [backoff_s(failures, settings, rng) for _ in range(50)]
        assert all(full * 0.5 <= w <= full for w in waits)
        assert max(waits) - min(waits) > 0.1 * full  # jittered, not in step


def test_what_one_process_committed_another_sees(tmp_path):
    box = Outbox.in_folder(tmp_path)
    box.add_destinations([ARCHIVE])
    box.enqueue(obj(1))
    code = (
        "import sys; from pathlib import Path; from scheduler.hospital.outbox import Outbox;"
        "b = Outbox.in_folder(Path(sys.argv[1]));"
        "b.mark_sent('1.2.3.1', 'ARCH@127.0.0.1:105', 5.0)"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=root)
    assert box.rows()[0].state == "sent"
    assert box.undelivered() == 0


class _Status:
    def __init__(self, code: int) -> None:
        self.Status = code


class _ReportFirstAssociation:
    """An association whose PACS sends its commitment report on another association before
    the N-ACTION's own response is back (what Orthanc does under load)."""

    is_established = True

    def __init__(self, folder: Path, code: int = 0x0000) -> None:
        self.folder, self.code = folder, code

    def send_n_action(self, ds: Dataset, *_: object) -> tuple[_Status, None]:
        if self.code == 0x0000:
            report = Dataset()
            report.TransactionUID = ds.TransactionUID
            report.ReferencedSOPSequence = list(ds.ReferencedSOPSequence)
            commitment.apply_report(self.folder, report)
        return _Status(self.code), None


def _sent_box(folder: Path) -> Outbox:
    box = Outbox.in_folder(folder)
    box.add_destinations([PACS])
    box.enqueue(obj(1))
    box.mark_sent("1.2.3.1", destination_name(PACS), 10.0)
    return box


def test_a_report_that_overtakes_the_n_action_response_still_commits(tmp_path):
    box = _sent_box(tmp_path)
    sender = Sender(tmp_path, OutboxSettings(), "FLUORO", clock=lambda: 11.0)
    (target,) = box.targets()
    sender._ask_commitment(box, target, _ReportFirstAssociation(tmp_path))
    assert [r.state for r in box.rows()] == ["committed"]


def test_a_refused_commitment_request_is_asked_again_at_the_next_pass(tmp_path):
    box = _sent_box(tmp_path)
    sender = Sender(tmp_path, OutboxSettings(), "FLUORO", clock=lambda: 11.0)
    (target,) = box.targets()
    sender._ask_commitment(box, target, _ReportFirstAssociation(tmp_path, code=0x0110))
    assert [r.state for r in box.rows()] == ["sent"]
    assert box.to_commit(destination_name(PACS), 11.5, 60.0) == [
        ("1.2.840.10008.5.1.4.1.1.12.2", "1.2.3.1")
    ]
