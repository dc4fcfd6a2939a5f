"""What the console shows, folded from journal lines (live, or read back from events.jsonl).

Times are the exam's loop seconds, as the journal has them: the page shows T+ from the
injector-confirmed injection start, the same number the record holds.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from ..moments import moment_s

#: journal lines the page keeps
JOURNAL_TAIL = 60
#: contrast-curve points kept (thinned by half beyond it)
CURVE_POINTS = 1000


class ExamView:
    """The exam as the page shows it; :meth:`apply` one journal line at a time."""

    def __init__(self, steps: list[dict[str, Any]] | None = None) -> None:
        self.exam: dict[str, Any] = {"protocol": "", "state": "idle", "reason": ""}
        self.steps: dict[str, dict[str, Any]] = {}
        for s in steps or []:
            self._step(s["id"]).update(s)
        self.now_s = 0.0
        self.anchor_s: float | None = None
        self.next: dict[str, Any] | None = None
        self.last_image: str | None = None
        self.images: list[str] = []
        self.injector: dict[str, Any] = {"state": "idle"}
        self.dose: dict[str, float] = {"air_kerma_mgy": 0.0, "dap_gy_cm2": 0.0, "fluoro_s": 0.0}
        self.alerts: list[str] = []
        self.devices: dict[str, str] = {"injector": "ok", "carm": "ok", "table": "ok"}
        self.journal: collections.deque[str] = collections.deque(maxlen=JOURNAL_TAIL)
        #: the display-only lines seen (time-point waits): few, kept for counting
        self.waits: list[dict[str, Any]] = []
        #: the simulated patient's iodine (mg/mL) per compartment, sampled (simulator only)
        self.curves: dict[str, list[float]] = {"t_s": []}
        #: what is not in the journal: the pending prompt, the clock of a live exam
        self.live: dict[str, Any] = {"prompt": None, "controls": False}

    def _step(self, sid: str) -> dict[str, Any]:
        return self.steps.setdefault(
            sid, {"id": sid, "title": sid, "status": "pending", "files": []}
        )

    def apply(self, line: dict[str, Any]) -> None:
        kind, sid, data = line.get("kind"), line.get("step"), line.get("data") or {}
        t = line.get("t_s")
        if isinstance(t, int | float):
            self.now_s = max(self.now_s, float(t))
        if kind in ("waiting", "wait_over"):
            self.waits.append(line)
        if kind == "waiting":
            self.next = {"step": sid, "label": data.get("label"), "deadline_s": data["deadline_s"]}
            return
        if kind == "wait_over":
            self.next = None
            return
        if kind == "live":
            return
        source = line.get("source")
        if kind != "status":  # the devices' periodic reports: shown in their panels instead
            self.journal.append(_text(line, self.anchor_s))
        if kind == "exam_started":
            self.exam["protocol"] = data.get("protocol", "")
            for s in data.get("steps", []):
                self._step(s)
        elif kind == "state":
            self.exam["state"] = data.get("to_state", "")
        elif kind == "exam_finished":
            self.exam["state"], self.exam["reason"] = data.get("state"), data.get("reason", "")
            self.next = None
        elif kind == "injection_confirmed":
            self.anchor_s = float(data["started_at_s"])
        elif kind == "step_done" and sid:
            step = self._step(sid)
            for key in ("status", "detail", "planned_s", "commanded_s", "device_s", "files"):
                step[key] = data.get(key)
        elif kind == "command" and sid and data.get("command") != "prepare_view":
            step = self._step(sid)
            # A repeat or extra film of a finished step is a film of its own: the step keeps
            # its time point and times.
            if step["status"] in ("pending", "running"):
                step.update(commanded_s=line.get("t_s"), planned_s=data.get("planned_s"))
                step["status"] = "running"
        elif kind == "capture" and sid:
            self.last_image = data["file"]
            self.images.append(data["file"])
            self._step(sid).setdefault("device_s", data.get("device_s"))
            self.dose["air_kerma_mgy"] += float(data.get("reference_air_kerma_mgy") or 0.0)
            self.dose["dap_gy_cm2"] += float(data.get("dap_gy_cm2") or 0.0)
        elif kind == "step_skipped" and sid:
            self._step(sid)["status"] = "skipped"
        elif kind in ("fluoro_timer_alert", "air_kerma_notification", "dose_rate_exceeded"):
            self.alerts.append(str(data.get("message", kind)))
        elif kind == "fluoro_done":
            pass
        elif source in ("injector",) or (source and "inject" in str(source)):
            self._injector(kind, data)
        if kind in ("fault", "device_lost") and data.get("device") in self.devices:
            self.devices[data["device"]] = f"{kind}: {data.get('fault') or data.get('error')}"
        elif kind in _LINK_STATES and source not in (None, "scheduler", "operator", "safety"):
            self.devices[str(source)] = _LINK_STATES[kind](data)
        if kind == "fluoro_ended" and data.get("duration_s") is not None:
            self.dose["fluoro_s"] += float(data["duration_s"])

    def add_curve_point(self, t_s: float, values: dict[str, float]) -> None:
        if len(self.curves["t_s"]) >= CURVE_POINTS:  # a very long exam: keep every other
            self.curves = {k: v[::2] for k, v in self.curves.items()}
        n = len(self.curves["t_s"])
        self.curves["t_s"].append(round(t_s, 3))
        for name, value in values.items():
            series = self.curves.setdefault(name, [])
            series.extend([float("nan")] * (n - len(series)))  # JSON null: a missing point
            series.append(round(value, 4))

    def _injector(self, kind: Any, data: dict[str, Any]) -> None:
        for key in ("state", "delivered_ml", "flow_ml_s", "pressure_kpa"):
            if key in data:
                self.injector[key] = data[key]
        if kind in ("completed", "stopped", "faulted", "armed"):
            self.injector["state"] = kind

    def snapshot(self) -> dict[str, Any]:
        return {
            "exam": dict(self.exam),
            "steps": [dict(s) for s in self.steps.values()],
            "now_s": self.now_s,
            "anchor_s": self.anchor_s,
            "next": self.next,
            "last_image": self.last_image,
            "images": list(self.images),
            "injector": dict(self.injector),
            "dose": {**self.dose, "alerts": list(self.alerts)},
            "devices": dict(self.devices),
            "journal": list(self.journal),
            "curves": {k: [None if x != x else x for x in v] for k, v in self.curves.items()},
            **self.live,
        }


#: a device's link as its panel says it (the journal keeps the details)
_LINK_STATES: dict[str, Callable[[dict[str, Any]], str]] = {
    "link_lost": lambda d: f"LINK LOST ({d.get('detail') or d.get('link')}): reconnecting",
    "link_up": lambda d: "ok (link up again)",
    "security": lambda d: f"SECURITY: {d.get('count')} frame(s) dropped ({d.get('what')})",
}


def _text(line: dict[str, Any], anchor: float | None) -> str:
    t = moment_s(line.get("kind"), float(line.get("t_s") or 0.0), line.get("data") or {})
    when = f"T+{t - anchor:7.1f}s" if anchor is not None else f"t={t:7.1f}s"
    data = line.get("data") or {}
    detail = ", ".join(f"{k}={v}" for k, v in list(data.items())[:4])
    return f"{when} {line.get('source')} {line.get('kind')} {line.get('step') or ''} {detail}"
