"""``dose-report.html`` and ``summary.json``'s ``dose`` section, as a person and a program
read them: the page parses, names every irradiation event the journal recorded, its totals
are the summary's, it shows the images and fetches nothing from outside."""

from __future__ import annotations

import re
from collections import defaultdict
from html.parser import HTMLParser
from typing import Any

import pydicom
import pytest

from fluoroctl.testing import ExamRun, RunProtocol

EXAMS = {
    "standard": ("ivu-standard", None),
    "obstruction": ("ivu-obstruction", "left-obstruction"),
    "nephrotomography": ("ivu-nephrotomography", None),
}


class Page(HTMLParser):
    """Every element's attributes, and the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module", params=sorted(EXAMS))
def exam(request: pytest.FixtureRequest, shared_exam: RunProtocol) -> ExamRun:
    protocol, patient = EXAMS[request.param]
    return shared_exam(protocol, patient=patient) if patient else shared_exam(protocol)


@pytest.fixture(scope="module")
def page(exam: ExamRun) -> tuple[str, Page]:
    path = exam.out / "dose-report.html"
    assert path.is_file(), "the exam left no dose-report.html"
    raw = path.read_text(encoding="utf-8")
    parsed = Page()
    parsed.feed(raw)
    parsed.close()
    return raw, parsed


def _journal_events(exam: ExamRun) -> dict[str, dict[str, Any]]:
    """Per step (one irradiation each): its files, DAP and kerma as the journal booked them."""
    out: dict[str, dict[str, Any]] = defaultdict(lambda: {"files": [], "dap": 0.0, "kerma": 0.0})
    for line in exam.events_of("capture", source="scheduler"):
        assert line.step is not None
        e = out[line.step]
        e["files"].append(str(line.data["file"]))
        e["dap"] += float(line.data["dap_gy_cm2"])
        e["kerma"] += float(line.data["reference_air_kerma_mgy"])
    return out


def test_page_names_every_irradiation_event(exam: ExamRun, page: tuple[str, Page]) -> None:
    _, parsed = page
    rows = [a for tag, a in parsed.elements if tag == "tr" and "event" in a.get("class", "")]
    expected = _journal_events(exam)
    assert len(rows) == len(expected)
    uid_of = {
        p.name: str(pydicom.dcmread(p, stop_before_pixels=True).IrradiationEventUID)
        for p in exam.images
    }
    by_uid = {r["data-uid"]: r for r in rows}
    text = " ".join(parsed.text)
    for step, e in expected.items():
        (uid,) = {uid_of[f] for f in e["files"]}
        row = by_uid[uid]
        assert float(row["data-dap-gy-cm2"]) == pytest.approx(e["dap"], abs=1e-6), step
        assert float(row["data-reference-air-kerma-mgy"]) == pytest.approx(e["kerma"], abs=1e-6)
        for name in e["files"]:
            assert name in text


def test_page_totals_are_the_summarys(exam: ExamRun, page: tuple[str, Page]) -> None:
    _, parsed = page
    totals = {
        a["id"].removeprefix("total-"): float(a["data-value"])
        for tag, a in parsed.elements
        if tag == "tr" and a.get("id", "").startswith("total-")
    }
    summary, dose = exam.summary["totals"], exam.summary["dose"]
    for key, value in dose["totals"].items():
        assert totals[key] == pytest.approx(value), key
    # and the exam's own totals, summed over the frames the C-arm reported
    assert totals["dap_gy_cm2"] == pytest.approx(summary["dap_gy_cm2"], abs=1e-4)
    assert totals["reference_air_kerma_mgy"] == pytest.approx(
        summary["reference_air_kerma_mgy"], abs=1e-3
    )
    assert totals["fluoro_time_s"] == pytest.approx(summary["fluoro_time_s"])
    assert totals["tomo_sweeps"] == summary["tomo_sweeps"]
    assert totals["radiographs"] == summary["radiographic_exposures"]
    # the sums of the section's own events
    events = dose["events"]
    assert dose["totals"]["dap_gy_cm2"] == pytest.approx(
        sum(e["dap_gy_cm2"] for e in events), abs=1e-5
    )
    assert dose["totals"]["irradiation_events"] == len(events)


def test_page_shows_every_image_and_fetches_nothing(exam: ExamRun, page: tuple[str, Page]) -> None:
    raw, parsed = page
    images = [a for tag, a in parsed.elements if tag == "img"]
    assert len(images) == len(exam.images)
    assert all(a["src"].startswith("data:image/png;base64,") for a in images)
    for tag, attrs in parsed.elements:
        for name in ("src", "href", "action", "data", "poster"):
            value = attrs.get(name)
            assert value is None or value.startswith(("data:", "#")), (tag, name, value)
        assert tag not in ("script", "link", "iframe", "object", "embed"), tag
    assert not re.search(r"(https?:)?//[\w.-]+\.\w", raw.replace("data:image/png;base64,", ""))
    assert "url(" not in raw


def test_page_lists_the_alerts_of_the_summary(shared_exam: RunProtocol) -> None:
    from pathlib import Path

    from scheduler.policy import DoseLimits
    from scheduler.room import load_room

    root = Path(__file__).resolve().parents[2]
    room = load_room(root / "configs" / "rooms" / "simulator.yaml")
    room = room.model_copy(
        update={"dose": DoseLimits(air_kerma_notify_mgy=5.0, air_kerma_notify_step_mgy=5.0)}
    )
    run = shared_exam("ivu-standard", room=room)
    alerts = run.summary["dose"]["alerts"]
    journaled = run.events_of("air_kerma_notification", source="safety")
    assert len(alerts) == len(journaled) > 1
    parsed = Page()
    parsed.feed((run.out / "dose-report.html").read_text(encoding="utf-8"))
    items = [a for tag, a in parsed.elements if tag == "li" and "alert" in a.get("class", "")]
    assert len(items) == len(journaled)
    text = " ".join(parsed.text)
    for line in journaled:
        assert str(line.data["message"]) in text
