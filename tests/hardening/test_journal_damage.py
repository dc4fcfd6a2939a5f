"""Hazard: a damaged journal "repaired" by deleting records (issue 10 item 3).

`resume` used to cut everything after the first unreadable line, even mid-file, and then
re-expose films whose capture lines it had deleted. Now:

* damage anywhere but at the very end — an unreadable line, valid JSON that is no exam
  event, a line of another exam, a second ``exam_started``, a sequence gap or repeat — is
  refused: exit 2, one line naming the journal line and the reason, and every file in the
  folder byte-identical afterwards;
* a torn last line (bytes without a newline: a write cut short) is the one thing resume may
  cut, after keeping the bytes in ``events.jsonl.torn-<line>``; a film whose DICOM file
  exists is never exposed again, even when its capture line was the torn one.

Trials run on real crashed exams (``fluoroctl run`` killed after its N-th journal line).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from scheduler.protocol import CaptureStep, load_protocol
from scheduler.recovery import RecoveryError, reconstruct

from .exam_folders import (
    JOURNAL,
    PROTOCOL,
    cli,
    copy_exam,
    crash_exam,
    events,
    images,
    journal_lines,
    line_at,
    one_error_line,
    snapshot,
    write_journal,
)

#: the crash point of the damage trials: the scout taken, the injection running (200 lines)
N = 200
#: the accelerated exam's 342nd line is film-4min's capture line (its DICOM file exists)
FILM_4MIN_CAPTURE = 342


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = crash_exam(tmp_path_factory.mktemp("crashed") / "exam", N)
    assert line_at(out, 10)["kind"] == "capture" and line_at(out, 10)["step"] == "scout"
    return out


@pytest.fixture(scope="module")
def other_exam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second exam of the same protocol, started later: the source of foreign lines."""
    return crash_exam(tmp_path_factory.mktemp("other") / "exam", 60)


@pytest.fixture
def exam(crashed: Path, tmp_path: Path) -> Path:
    return copy_exam(crashed, tmp_path / "exam")


def with_seq(line: bytes, seq: int) -> bytes:
    record = json.loads(line)
    record["seq"] = seq
    return json.dumps(record, separators=(",", ":")).encode()


Damage = Callable[[list[bytes], list[bytes]], tuple[list[bytes], bytes]]


def garbage_mid_file(lines: list[bytes], other: list[bytes]) -> tuple[list[bytes], bytes]:
    lines[49] = b"\x00\x00\x13 not a record at all"
    return lines, b""


def deleted_capture_line(lines: list[bytes], other: list[bytes]) -> tuple[list[bytes], bytes]:
    del lines[9]  # the scout's capture line
    return lines, b""


def foreign_line(lines: list[bytes], other: list[bytes]) -> tuple[list[bytes], bytes]:
    lines[49] = other[49]  # the same record of another exam: same seq, same step
    return lines, b""


def json_not_an_event(lines: list[bytes], other: list[bytes]) -> tuple[list[bytes], bytes]:
    lines[49] = b'{"seq": 50, "note": "hello"}'
    return lines, b""


def second_exam_started(lines: list[bytes], other: list[bytes]) -> tuple[list[bytes], bytes]:
    lines.append(with_seq(lines[0], len(lines) + 1))
    return lines, b""


def repeated_line(lines: list[bytes], other: list[bytes]) -> tuple[list[bytes], bytes]:
    lines.insert(50, lines[49])
    return lines, b""


def damage_then_torn_tail(lines: list[bytes], other: list[bytes]) -> tuple[list[bytes], bytes]:
    lines[49] = b"#### garbage ####"
    return lines, b'{"seq":201,"t_s":70.'


def unreadable_last_line(lines: list[bytes], other: list[bytes]) -> tuple[list[bytes], bytes]:
    lines.append(b"garbage that ends in a newline")  # complete, so not a torn write
    return lines, b""


CASES: list[tuple[Damage, int, str]] = [
    (garbage_mid_file, 50, "unreadable line"),
    (deleted_capture_line, 10, "sequence gap: seq 11 where 10 was expected"),
    (foreign_line, 50, "another exam"),
    (json_not_an_event, 50, "not an exam event"),
    (second_exam_started, N + 1, "a second exam_started"),
    (repeated_line, 51, "seq 50 repeats"),
    (damage_then_torn_tail, 50, "unreadable line"),
    (unreadable_last_line, N + 1, "unreadable line"),
]


@pytest.mark.parametrize(("damage", "line", "reason"), CASES, ids=[c[0].__name__ for c in CASES])
def test_damage_is_refused_and_nothing_is_touched(
    exam: Path, other_exam: Path, damage: Damage, line: int, reason: str
) -> None:
    lines, tail = damage(journal_lines(exam), journal_lines(other_exam))
    write_journal(exam, lines, tail)
    before = snapshot(exam)
    message = one_error_line(cli("resume", str(exam)))
    assert f"{exam / JOURNAL}:{line}: " in message
    assert reason in message
    assert "nothing was changed" in message
    assert snapshot(exam) == before, "a refused resume changed the exam folder"


@pytest.mark.parametrize(
    ("edit", "line", "reason"),
    [
        (lambda r: r.update(step="nephrotomo"), 50, "not a step of this exam"),
        (lambda r: r.update(wall="2020-01-01T00:00:00.000+00:00"), 50, "another exam"),
        (lambda r: r.update(seq="fifty"), 50, "not an exam event"),
        (lambda r: r.update(extra=1), 50, "not an exam event"),
    ],
    ids=["step-of-another-protocol", "wall-of-another-clock", "seq-not-a-number", "unknown-key"],
)
def test_edited_records_are_refused_in_process(
    exam: Path, edit: Callable[[dict[str, object]], None], line: int, reason: str
) -> None:
    lines = journal_lines(exam)
    record = json.loads(lines[line - 1])
    edit(record)
    lines[line - 1] = json.dumps(record).encode()
    write_journal(exam, lines)
    before = snapshot(exam)
    with pytest.raises(RecoveryError, match=f":{line}: .*{reason}"):
        reconstruct(exam, repair=True)
    assert snapshot(exam) == before


def test_capture_line_naming_a_file_outside_the_folder_is_refused(exam: Path) -> None:
    lines = journal_lines(exam)
    record = json.loads(lines[9])
    record["data"]["file"] = "../../etc/passwd.dcm"
    lines[9] = json.dumps(record).encode()
    write_journal(exam, lines)
    with pytest.raises(RecoveryError, match=":10: capture names no image file"):
        reconstruct(exam, repair=True)


def test_torn_last_line_is_kept_aside_cut_and_the_exam_resumes(exam: Path) -> None:
    tail = b'{"seq":201,"t_s":70.25,"wall":"2026-'
    complete = (exam / JOURNAL).read_bytes()
    (exam / JOURNAL).write_bytes(complete + tail)
    before = {name: (exam / name).read_bytes() for name in images(exam)}
    proc = cli("resume", str(exam))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (exam / f"{JOURNAL}.torn-{N + 1}").read_bytes() == tail
    journal = (exam / JOURNAL).read_bytes()
    assert journal.startswith(complete), "the complete records before the tear were rewritten"
    assert [e["seq"] for e in events(exam)] == list(range(1, len(events(exam)) + 1))
    for name, data in before.items():
        assert (exam / name).read_bytes() == data
    summary = json.loads((exam / "summary.json").read_text())
    assert summary["state"] == "completed"
    assert summary["resumed"]["journal_torn_tail"] == {
        "line": N + 1,
        "bytes": len(tail),
        "kept_in": f"{JOURNAL}.torn-{N + 1}",
    }
    expose = [e for e in events(exam) if e["data"].get("command") == "expose"]
    captures = [s.id for s in load_protocol(PROTOCOL).steps if isinstance(s, CaptureStep)]
    assert sorted(e["step"] for e in expose) == sorted(captures), "a film was exposed twice"


@pytest.fixture(scope="module")
def crashed_after_film(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = crash_exam(tmp_path_factory.mktemp("film") / "exam", FILM_4MIN_CAPTURE)
    last = line_at(out, FILM_4MIN_CAPTURE)
    assert last["kind"] == "capture" and last["data"]["file"] == "003-film-4min.dcm"
    return out


def test_torn_capture_line_never_re_exposes_the_film_on_disk(
    crashed_after_film: Path, tmp_path: Path
) -> None:
    """The process died while writing film-4min's capture line; its DICOM file exists."""
    exam = copy_exam(crashed_after_film, tmp_path / "exam")
    lines = journal_lines(exam)
    torn = lines[-1][: len(lines[-1]) // 2]
    write_journal(exam, lines[:-1], torn)
    film = (exam / "003-film-4min.dcm").read_bytes()
    proc = cli("resume", str(exam))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (exam / f"{JOURNAL}.torn-{FILM_4MIN_CAPTURE}").read_bytes() == torn
    assert (exam / "003-film-4min.dcm").read_bytes() == film
    log = events(exam)
    # Fire-once, as both ends saw it: one command and one exposure reported by the C-arm.
    assert len([e for e in log if e["step"] == "film-4min" and e["kind"] == "exposure"]) == 1
    commands = [e for e in log if e["step"] == "film-4min" and e["kind"] == "command"]
    assert [c["data"]["command"] for c in commands] == ["prepare_view", "expose"]
    summary = json.loads((exam / "summary.json").read_text())
    assert summary["state"] == "completed"
    assert summary["resumed"]["adopted_from_disk"] == ["003-film-4min.dcm"]
    steps = {s["id"]: s for s in summary["steps"]}
    film_step = steps["film-4min"]
    assert film_step["status"] == "done"
    assert film_step["detail"] == "adopted from disk after a restart"
    assert film_step["files"] == ["003-film-4min.dcm"]
    # Its time point is the one the image itself records (taken on time before the crash).
    late = film_step["actual_after_injection_s"] - film_step["planned_after_injection_s"]
    assert 0 <= late <= 1.0
    taken = sorted(f.split("-", 1)[1].removesuffix(".dcm") for f in images(exam))
    captures = [s.id for s in load_protocol(PROTOCOL).steps if isinstance(s, CaptureStep)]
    assert taken == sorted(captures), "a film is missing or was taken twice"
    listed = sorted(f for s in summary["steps"] for f in s["files"])
    assert listed == sorted(images(exam))


def test_a_last_record_lacking_only_its_newline_is_kept(exam: Path) -> None:
    """A write cut one byte short left a complete record: it is a record, not torn bytes."""
    complete = (exam / JOURNAL).read_bytes()
    (exam / JOURNAL).write_bytes(complete[:-1])
    assert reconstruct(exam).last_seq == N  # read-only: nothing written yet
    assert (exam / JOURNAL).read_bytes() == complete[:-1]
    rec = reconstruct(exam, repair=True)
    assert rec.last_seq == N and rec.torn is None
    assert (exam / JOURNAL).read_bytes() == complete
    assert not list(exam.glob(f"{JOURNAL}.torn-*"))
