"""Progress for the technologist: current step, countdown to the next capture, images, contrast.

On a terminal a live panel (refreshed from a thread, so it costs the exam's event loop
nothing); elsewhere (CI, pipes) one line per notable event.
"""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from drivers import Clock

from .exam import ExamProgress
from .journal import ExamEvent
from .moments import moment_s

NOTABLE = {
    "exam_started",
    "prompt",
    "injection_confirmed",
    "injection_finished",
    "capture",
    "capture_missed",
    "capture_failed",
    "interlock_refused",
    "fluoro_timer_alert",
    "air_kerma_notification",
    "dose_rate_exceeded",
    "abort",
    "exam_finished",
}


def _mmss(seconds: float, plus: str = "") -> str:
    # Rounded once, so a value just under a minute never prints as "00:60.0".
    seconds = round(seconds, 1)
    sign = "-" if seconds < 0 else plus
    seconds = abs(seconds)
    return f"{sign}{int(seconds // 60):02d}:{seconds % 60:04.1f}"


class ProgressView:
    def __init__(
        self, progress: ExamProgress, clock: Clock, console: Console | None = None
    ) -> None:
        self.progress = progress
        self.clock = clock
        self.console = console or Console(stderr=True)
        self._live: Live | None = None

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self._live = Live(
                get_renderable=self._render, console=self.console, refresh_per_second=8
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def on_event(self, event: ExamEvent) -> None:
        if event.kind not in NOTABLE:
            return
        p = self.progress
        at = moment_s(event.kind, event.t_s, event.data)
        after = "" if p.injection_start_s is None else f"T{_mmss(at - p.injection_start_s, '+')}"
        text = _describe(event)
        if event.kind == "capture" and event.t_s - at >= 0.5:  # the image reached the disk later
            text += f"; on disk {event.t_s - at:.1f} s later"
        line = f"[{_mmss(at)}] {after:>10} {event.step or '':<16} {text}"
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def _render(self) -> Table:
        p = self.progress
        now = self.clock.now()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row(
            "Exam",
            f"{p.protocol}  [{p.state}]  "
            f"step {min(p.steps_done + 1, p.steps_total)}/{p.steps_total}",
        )
        grid.add_row("Current step", p.current_step or "-")
        if p.next_deadline_s is not None:
            grid.add_row("Next capture", f"{p.next_step} in {_mmss(p.next_deadline_s - now)}")
        if p.injection_start_s is not None:
            grid.add_row("Since injection", _mmss(now - p.injection_start_s))
        grid.add_row("Images", str(p.images))
        grid.add_row("Contrast", f"{p.contrast_ml:.1f} mL  ({p.pressure_kpa:.0f} kPa)")
        grid.add_row("Ref. air kerma", f"{p.reference_air_kerma_mgy:.2f} mGy")
        grid.add_row("DAP", f"{p.dap_gy_cm2:.3f} Gy·cm²")
        grid.add_row("Fluoro time", _mmss(p.fluoro_time_s))
        if p.dose_alerts:
            grid.add_row("Dose alerts", f"{len(p.dose_alerts)}: {p.dose_alerts[-1]}")
        if p.message:
            grid.add_row("Operator", p.message)
        return grid


def _describe(event: ExamEvent) -> str:
    d = event.data
    match event.kind:
        case "exam_started":
            return f"exam started: {d.get('protocol')} in {d.get('room')}"
        case "prompt":
            return f"operator: {d.get('message')}"
        case "injection_confirmed":
            return "injection started (injector-confirmed)"
        case "injection_finished":
            return f"injection {d.get('state')}: {d.get('delivered_ml')} mL delivered"
        case "capture":
            late = ""
            lateness = d.get("lateness_s")  # the scheduler's, whatever the trigger (results.py)
            if lateness is None and d.get("planned_s") is not None and d.get("commanded_s"):
                lateness = d["commanded_s"] - d["planned_s"]  # a journal from before triggers
            if lateness is not None:
                late = f", lateness {1000 * lateness:+.1f} ms"
            return f"captured {d.get('file')} ({d.get('position')}, {d.get('kv')} kV{late})"
        case "capture_missed" | "capture_failed":
            return f"capture not taken: {d.get('reason')}"
        case "interlock_refused":
            return f"INTERLOCK: {d.get('command')} refused: {d.get('reason')}"
        case "fluoro_timer_alert" | "air_kerma_notification" | "dose_rate_exceeded":
            return f"DOSE: {d.get('message')}"
        case "abort":
            return f"ABORT: {d.get('reason')}; devices: {d.get('confirmed')}"
        case "exam_finished":
            return f"exam {d.get('state')}: {d.get('images')} images"
        case "uncommanded_injection":
            return f"SAFETY: injection not commanded: {d.get('evidence')}"
        case "security":
            return f"SECURITY: {d.get('count')} frame(s) dropped: {d.get('detail')}"
    return event.kind
