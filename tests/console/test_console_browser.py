"""The console in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

The exam runs on **virtual time** on the test's thread; the server in its own thread; the
browser in a third. Virtual time is fastest and deterministic here because every click that
changes the exam is made while a prompt waits: the exam is then held on the wall clock
(a person is answering), so nothing races the browser. Between prompts the exam runs at
virtual speed and the page simply shows what arrives.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from scheduler.console import ConsoleOperator
from scheduler.console.curves import SHOWN

from .harness import ROOT, in_thread, protocol, run_exam

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no chromium at /usr/bin/chromium (Debian package chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
expect = sync_api.expect


def new_console() -> ConsoleOperator:
    console = ConsoleOperator.__new__(ConsoleOperator)
    ConsoleOperator.__init__(console, clock=None, announce=lambda _: None)  # type: ignore[arg-type]
    return console


def url_of(console: ConsoleOperator) -> str:
    deadline = time.monotonic() + 30
    while console.server is None or not console.server.url:
        assert time.monotonic() < deadline, "the console never started"
        time.sleep(0.01)
    return console.server.url


def next_prompt(page: Any, after: str | None) -> str | None:
    """Wait for a prompt other than ``after`` (its id), or the exam's end; the new id."""
    page.wait_for_function(
        """(old) => { const p = document.getElementById('prompt');
             const s = document.getElementById('state').textContent;
             return (!p.hidden && p.dataset.id !== old) || /^(completed|aborted|faulted)/.test(s); }""",
        arg=after or "",
        timeout=60_000,
    )
    if page.locator("#prompt").is_hidden():
        return None
    return page.locator("#prompt").get_attribute("data-id")


def launch(p: Any) -> Any:
    return p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])


def test_the_standard_exam_driven_by_clicks(tmp_path, artifacts):
    shots = artifacts  # the three screenshots stay after the run (build/test-artifacts/...)
    console = new_console()
    log: list[str] = []
    seen: dict[str, Any] = {}

    def browser() -> None:
        with sync_api.sync_playwright() as p:
            chromium = launch(p)
            page = chromium.new_page(viewport={"width": 1400, "height": 950})
            page.goto(url_of(console))
            prompt = None
            while (prompt := next_prompt(page, prompt)) is not None:
                step = page.locator("#prompt-step").text_content()
                if step == "inject":
                    # the injection start needs a deliberate confirmation
                    assert page.locator("#confirm").is_disabled()
                    page.keyboard.press("Enter")  # no default action
                    page.screenshot(path=str(shots / "1-injection-prompt.png"))
                    page.locator("#deliberate").check()
                if step == "compression-on":
                    page.locator("#pause").click()
                    expect(page.locator("#state")).to_have_text(
                        re.compile("^paused"), timeout=60_000
                    )
                    page.locator("#resume").click()
                    expect(page.locator("#state")).to_have_text(
                        re.compile("^running"), timeout=60_000
                    )
                    page.locator("#reason").fill("patient cannot lie prone")
                    page.locator("#skip-prone").click()
                    expect(page.locator("#result")).not_to_be_empty()
                    log.append(page.locator("#result").text_content() or "")
                    page.locator("#reason").fill("motion blur")
                    page.locator("#repeat-film-5min").click()
                    expect(page.locator("#result")).to_have_text("done")
                    log.append(page.locator("#result").text_content() or "")
                    page.wait_for_selector("#image[src*='film-5min']")
                    page.screenshot(path=str(shots / "2-mid-exam.png"))
                log.append(f"{step}: {page.locator('#confirm').text_content()}")
                page.locator("#confirm").click()
            expect(page.locator("#state")).to_have_text(re.compile("^completed"), timeout=60_000)
            expect(page.locator("#sheet img")).to_have_count(7)
            expect(page.locator("#timing circle.actual")).to_have_count(5)  # 4 films, 1 prompt
            # every thumbnail loaded (the last one may still be on its way)
            page.wait_for_function(
                """() => [...document.querySelectorAll('#sheet img')]
                           .every((i) => i.complete && i.naturalWidth > 0)""",
                timeout=60_000,
            )
            seen["thumbs"] = page.eval_on_selector_all(
                "#sheet img", "(els) => els.map((e) => [e.dataset.name, e.naturalWidth])"
            )
            seen["late"] = page.eval_on_selector_all(
                "#timing circle.actual",
                "(els) => els.map((e) => [e.dataset.step, parseFloat(e.dataset.lateMs)])",
            )
            seen["curves"] = page.eval_on_selector_all(
                "#curves polyline", "(els) => els.map((e) => e.dataset.name)"
            )
            page.locator("#sheet img").first.click()  # the contact sheet opens an image
            expect(page.locator("#image-name")).to_have_text(seen["thumbs"][0][0])
            page.screenshot(path=str(shots / "3-completed.png"), full_page=True)
            chromium.close()

    thread = in_thread(browser)
    exam = run_exam(tmp_path / "exam", protocol("ivu-standard"), console=console)
    thread.join(timeout=120)
    console.close()
    assert not thread.errors, thread.errors  # type: ignore[attr-defined]
    assert exam.result.state == "completed"
    confirmed = [(e["step"], e["data"]["action"]) for e in exam.kinds("confirmed")]
    assert confirmed == [
        ("inject", "confirm_injection"),
        ("compression-on", "compression_on"),
        ("compression-off", "compression_off"),
        ("void", "void"),
    ]
    assert {e["data"]["source"] for e in exam.kinds("confirmed")} == {"console"}
    assert not exam.kinds("declined")
    moves = [(e["data"]["from_state"], e["data"]["to_state"]) for e in exam.kinds("state")]
    assert ("running", "paused") in moves and ("paused", "running") in moves
    pauses = [e for e in exam.kinds("state") if e["data"]["to_state"] == "paused"]
    assert "console" in pauses[0]["data"]["reason"]
    (skipped,) = exam.kinds("step_skipped")
    assert skipped["step"] == "prone" and skipped["data"]["reason"] == "patient cannot lie prone"
    assert skipped["data"]["source"] == "console"
    (film,) = exam.kinds("operator_film")
    assert film["step"] == "film-5min" and film["data"]["action"] == "repeat"
    assert film["data"]["reason"] == "motion blur" and film["data"]["status"] == "done"
    steps = {s.id: s for s in exam.result.steps}
    assert steps["prone"].status == "skipped"
    assert [s.status for s in exam.result.steps if s.id != "prone"] == ["done"] * 10
    assert len(exam.result.records) == 7  # 7 films - prone + the repeat
    # The page's contact sheet, timing plot and curves show what the record holds.
    files = [e["data"]["file"] for e in exam.kinds("capture")]
    assert [name for name, _ in seen["thumbs"]] == files
    assert all(0 < width <= 160 for _, width in seen["thumbs"])
    device_late_ms = {
        s.id: 1000 * (s.device_s - s.planned_s)
        for s in exam.result.steps
        if s.planned_s is not None and s.device_s is not None
    }
    assert {step for step, _ in seen["late"]} == set(device_late_ms)
    for step, late in seen["late"]:
        assert late == pytest.approx(device_late_ms[step], abs=0.051)
    assert sorted(seen["curves"]) == sorted(SHOWN)
    for name in ("1-injection-prompt.png", "2-mid-exam.png", "3-completed.png"):
        assert (shots / name).stat().st_size > 10_000, name
    if os.environ.get("FLUOROCTL_UPDATE_DOCS") == "1":  # refresh the docs' screenshot
        shutil.copy(shots / "2-mid-exam.png", ROOT / "docs/console.png")


def test_a_second_exam_aborted_from_the_page(tmp_path):
    console = new_console()

    def browser() -> None:
        with sync_api.sync_playwright() as p:
            chromium = launch(p)
            page = chromium.new_page()
            page.goto(url_of(console))
            next_prompt(page, None)
            assert page.locator("#prompt-step").text_content() == "inject"
            page.locator("#abort").click()
            page.locator("#abort-confirm").click()  # one click + confirm
            expect(page.locator("#state")).to_have_text(re.compile("^aborted"), timeout=60_000)
            chromium.close()

    thread = in_thread(browser)
    exam = run_exam(tmp_path / "exam", protocol("ivu-standard"), console=console)
    thread.join(timeout=120)
    console.close()
    assert not thread.errors, thread.errors  # type: ignore[attr-defined]
    assert exam.result.state == "aborted"
    assert exam.result.reason.startswith("aborted by the operator (console, session")
    starts = [e for e in exam.kinds("command") if e["data"].get("command") == "start_injection"]
    assert not starts  # aborted at the injection prompt: nothing was injected
    (finished,) = exam.kinds("exam_finished")
    assert finished["data"]["state"] == "aborted"
