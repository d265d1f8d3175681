"""The building blocks of `scrapesync report`'s page: escaped HTML, inline SVG charts, the
page's own CSS and script.

Everything the page shows comes from the destination, which is outside input: `el` escapes
every text and attribute value unless it is `Safe` (markup built here), so escaping is the
default rather than something each caller must remember. The charts are plain SVG drawn here
(no chart library, nothing fetched when the page is viewed); their colours are CSS variables,
so one chart serves the light and the dark theme. Every data point is an element with class
`mark` and its own `<title>` (the value on hover and for screen readers).
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final


class Safe(str):
    """Markup built by this module: inserted as is, never escaped again."""


def esc(value: object) -> Safe:
    """`value` as HTML text (quotes escaped too, so it is safe in attribute values)."""
    return value if isinstance(value, Safe) else Safe(html.escape(str(value), quote=True))


def _children(items: Iterable[object]) -> Iterable[Safe]:
    for item in items:
        if item is None:
            continue
        if isinstance(item, str):
            yield esc(item)
        elif isinstance(item, Iterable):
            yield from _children(item)
        else:
            yield esc(item)


def el(tag: str, *children: object, **attrs: object) -> Safe:
    """`<tag attrs>children</tag>`: attribute names `class_` -> `class`, `aria_label` ->
    `aria-label`; None drops an attribute, True writes it bare; children nest (lists flatten)."""
    parts = [tag]
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        key = name.rstrip("_").replace("_", "-")
        parts.append(key if value is True else f'{key}="{esc(value)}"')
    return Safe(f"<{' '.join(parts)}>{''.join(_children(children))}</{tag}>")


def csp_hash(source: str) -> str:
    """The Content-Security-Policy hash that allows exactly this inline script or style."""
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


# -- formatting ---------------------------------------------------------------------------


def fmt_int(value: float | None) -> str:
    return "-" if value is None else f"{round(value):,}"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def fmt_duration(seconds: float | None) -> str:
    """Seconds in the largest unit that keeps the number readable (as `scrapesync status`)."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def fmt_time(value: datetime | date | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def axis_times(values: Sequence[datetime]) -> list[str]:
    """Axis labels for moments: as precise as their span needs (seconds apart: the time)."""
    aware = [(v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC) for v in values]
    span = (max(aware) - min(aware)).total_seconds() if aware else 0
    pattern = "%H:%M:%S" if span < 3600 else "%m-%d %H:%M" if span < 2 * 86400 else "%Y-%m-%d"
    return [v.strftime(pattern) for v in aware]


# -- charts -------------------------------------------------------------------------------

WIDTH: Final = 320
HEIGHT: Final = 124
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 10, 24
Formatter = Callable[[float | None], str]


@dataclass(frozen=True)
class Point:
    label: str  # the x value on the axis
    value: float
    when: str = ""  # the x value in full, for the point's title (default: `label`)


@dataclass(frozen=True)
class Stack:
    label: str
    succeeded: int
    failed: int
    other: int


@dataclass(frozen=True)
class Bar:
    label: str
    value: float  # the oldest open job's age, hours
    limit: float  # the retention, hours
    note: str


def _nice_max(value: float, whole: bool = False) -> float:
    """A round axis maximum at or above `value`: 1, 2, 2.5 or 5 times a power of ten; for
    counts (`whole`) one whose half, the middle tick, is a whole number too."""
    if value <= 0 or not math.isfinite(value):
        return 2.0 if whole else 1.0
    power = 10 ** math.floor(math.log10(value))
    steps: tuple[float, ...] = (1, 2, 2.5, 5, 10)
    if whole:
        steps = (2, 4, 6, 8, 10) if power == 1 else (1, 2, 3, 4, 5, 6, 8, 10)
    return next(step * power for step in steps if step * power >= value)


def _svg(uid: str, title: str, desc: str, height: int, body: Iterable[Safe]) -> Safe:
    return el(
        "svg",
        el("title", title, id=f"{uid}-t"),
        el("desc", desc, id=f"{uid}-d"),
        *body,
        class_="chart",
        viewBox=f"0 0 {WIDTH} {height}",
        role="img",
        aria_labelledby=f"{uid}-t {uid}-d",
        xmlns="http://www.w3.org/2000/svg",
        preserveAspectRatio="xMidYMid meet",
    )


def _y_axis(top: float, fmt: Formatter) -> Iterable[Safe]:
    plot_h = HEIGHT - TOP - BOTTOM
    for share in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - share)
        yield el("line", x1=LEFT, x2=WIDTH - RIGHT, y1=f"{y:.1f}", y2=f"{y:.1f}", class_="grid")
        yield el(
            "text", fmt(top * share), x=LEFT - 4, y=f"{y + 3:.1f}", class_="tick", text_anchor="end"
        )


def _x_labels(first: str, last: str) -> Iterable[Safe]:
    y = HEIGHT - 6
    yield el("text", first, x=LEFT, y=y, class_="tick", text_anchor="start")
    if last != first:
        yield el("text", last, x=WIDTH - RIGHT, y=y, class_="tick", text_anchor="end")


def line_chart(
    uid: str, title: str, points: Sequence[Point], fmt: Formatter, whole: bool = False
) -> Safe:
    """Values over time, one circle per value (evenly spaced: syncs are events, not a clock);
    `whole`: the values are counts."""
    top = _nice_max(max(p.value for p in points), whole)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    coords = []
    for i, point in enumerate(points):
        x = LEFT + (plot_w * i / (len(points) - 1) if len(points) > 1 else plot_w / 2)
        y = TOP + plot_h * (1 - max(point.value, 0) / top)
        coords.append((x, y, point))
    marks = [
        el(
            "circle",
            el("title", f"{p.when or p.label}: {fmt(p.value)}"),
            cx=f"{x:.1f}",
            cy=f"{y:.1f}",
            r=3.5,
            class_="mark",
        )
        for x, y, p in coords
    ]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in coords)
    desc = f"{len(points)} values from {points[0].label} to {points[-1].label}, highest {fmt(top)}"
    body = [
        *_y_axis(top, fmt),
        el("polyline", points=line, class_="line"),
        *marks,
        *_x_labels(points[0].label, points[-1].label),
    ]
    return _svg(uid, title, desc, HEIGHT, body)


def stacked_bars(uid: str, title: str, stacks: Sequence[Stack]) -> Safe:
    """Runs per day: succeeded, failed and other (still open) stacked."""
    top = _nice_max(max(s.succeeded + s.failed + s.other for s in stacks), whole=True)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(stacks)
    width = max(min(slot * 0.7, 28), 1.5)
    marks = []
    for i, stack in enumerate(stacks):
        x = LEFT + slot * i + (slot - width) / 2
        base = float(TOP + plot_h)
        for kind, count in (("ok", stack.succeeded), ("bad", stack.failed), ("other", stack.other)):
            if count <= 0:
                continue
            h = plot_h * count / top
            base -= h
            name = {"ok": "succeeded", "bad": "failed", "other": "open"}[kind]
            marks.append(
                el(
                    "rect",
                    el("title", f"{stack.label}: {count} {name}"),
                    x=f"{x:.1f}",
                    y=f"{base:.1f}",
                    width=f"{width:.1f}",
                    height=f"{h:.1f}",
                    class_=f"mark {kind}",
                )
            )
    total = sum(s.succeeded + s.failed + s.other for s in stacks)
    desc = f"{total} runs over {len(stacks)} days, {stacks[0].label} to {stacks[-1].label}"
    body = [*_y_axis(top, fmt_int), *marks, *_x_labels(stacks[0].label, stacks[-1].label)]
    return _svg(uid, title, desc, HEIGHT, body)


def retention_bars(uid: str, title: str, bars: Sequence[Bar]) -> Safe:
    """The oldest open job's age as a share of the retention (the line at 100 %); a bar past
    the line marks results the provider may already have dropped."""
    row, left, right, top_pad = 30, 118, 12, 20
    height = top_pad + row * len(bars) + 8
    scale = max(2.0, min(max(b.value / b.limit for b in bars), 4.0))
    plot_w = WIDTH - left - right
    limit_x = left + plot_w / scale
    body: list[Safe] = [
        el("line", x1=f"{limit_x:.1f}", x2=f"{limit_x:.1f}", y1=14, y2=height - 4, class_="limit"),
        el("text", "retention", x=f"{limit_x:.1f}", y=10, class_="tick", text_anchor="middle"),
    ]
    for i, bar in enumerate(bars):
        y = top_pad + row * i
        share = min(bar.value / bar.limit, scale)
        over = bar.value > bar.limit
        body.append(el("text", bar.label, x=left - 6, y=y + 14, class_="label", text_anchor="end"))
        body.append(
            el(
                "rect",
                el("title", f"{bar.label}: {bar.note}"),
                x=left,
                y=y + 3,
                width=f"{max(plot_w * share / scale, 1.5):.1f}",
                height=16,
                class_="mark bad" if over else "mark",
            )
        )
        body.append(el("text", bar.note, x=left + 4, y=y + 28, class_="tick"))
    desc = (
        f"{len(bars)} tables with open jobs; {sum(b.value > b.limit for b in bars)} past retention"
    )
    return _svg(uid, title, desc, height, body)


# -- the page's style and script ----------------------------------------------------------

LIGHT: Final = {
    "bg": "#f5f6f8",
    "surface": "#ffffff",
    "text": "#1b2230",
    "muted": "#5a6374",
    "border": "#d9dee6",
    "accent": "#1d5fd6",
    "ok": "#1a7f3c",
    "bad": "#c0262d",
    "warn": "#a35a00",
    "other": "#8d99ab",
    "grid": "#e7eaf0",
    "shortbg": "#fdecec",
}
DARK: Final = {
    "bg": "#0f141b",
    "surface": "#171e28",
    "text": "#e4e8ef",
    "muted": "#9aa5b5",
    "border": "#2b3545",
    "accent": "#6ea8ff",
    "ok": "#4cc47a",
    "bad": "#ff6b6b",
    "warn": "#f2b24c",
    "other": "#66738a",
    "grid": "#243042",
    "shortbg": "#3a1d22",
}


def _vars(colours: dict[str, str]) -> str:
    return "".join(f"--{name}:{value};" for name, value in colours.items())


CSS: Final = (
    f":root{{color-scheme:light;{_vars(LIGHT)}}}"
    f"@media (prefers-color-scheme:dark){{:root:not([data-theme=light])"
    f"{{color-scheme:dark;{_vars(DARK)}}}}}"
    f":root[data-theme=dark]{{color-scheme:dark;{_vars(DARK)}}}"
    ":root[data-theme=light]{color-scheme:light}"
    """
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);
 font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:16px}
header.top{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:baseline;
 justify-content:space-between;margin-bottom:8px}
h1{font-size:1.5rem;margin:0}h2{font-size:1.2rem;margin:28px 0 8px}
h3{font-size:1rem;margin:0}
p,li{overflow-wrap:anywhere}.muted{color:var(--muted)}
nav ul{display:flex;flex-wrap:wrap;gap:4px 14px;list-style:none;padding:0;margin:4px 0 0}
a{color:var(--accent)}
button{font:inherit;color:var(--text);background:var(--surface);border:1px solid var(--border);
 border-radius:6px;padding:4px 10px;cursor:pointer}
button:focus-visible,a:focus-visible{outline:2px solid var(--accent);outline-offset:2px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:10px;
 margin:12px 0}
.tile{background:var(--surface);border:1px solid var(--border);border-radius:8px;padding:10px 12px}
.tile .value{font-size:1.4rem;font-weight:600;display:block}
.tile.bad{border-color:var(--bad)}.tile.bad .value{color:var(--bad)}
.cards{display:grid;gap:12px}
.card{background:var(--surface);border:1px solid var(--border);border-radius:8px;padding:12px;
 min-width:0}
.card>header{display:flex;flex-wrap:wrap;gap:4px 12px;align-items:baseline;margin-bottom:8px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(250px,1fr));gap:12px}
.charts{align-items:start}
.pair{display:grid;gap:12px;align-items:start;
 grid-template-columns:minmax(240px,1fr) minmax(0,3fr)}
table.compact{font-size:.8rem}table.compact th,table.compact td{padding:4px 6px}
figure{margin:0;min-width:0}
figcaption{font-size:.85rem;color:var(--muted);margin-bottom:2px}
svg.chart{display:block;width:100%;height:auto;max-height:260px}
svg .grid{stroke:var(--grid);stroke-width:1}
svg .tick{fill:var(--muted);font-size:9px}
svg .label{fill:var(--text);font-size:10px}
svg .line{fill:none;stroke:var(--accent);stroke-width:2}
svg .limit{stroke:var(--warn);stroke-width:1.5;stroke-dasharray:4 3}
svg circle.mark{fill:var(--accent);stroke:var(--surface);stroke-width:1}
svg rect.mark{fill:var(--accent)}svg rect.mark.ok{fill:var(--ok)}
svg rect.mark.bad{fill:var(--bad)}svg rect.mark.other{fill:var(--other)}
.legend{display:flex;flex-wrap:wrap;gap:2px 12px;font-size:.8rem;color:var(--muted);
 margin:4px 0 0;padding:0;list-style:none}
.legend li::before{content:"";display:inline-block;width:10px;height:10px;border-radius:2px;
 margin-right:4px;vertical-align:-1px;background:var(--accent)}
.legend .ok::before{background:var(--ok)}.legend .bad::before{background:var(--bad)}
.legend .other::before{background:var(--other)}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:.8rem;font-weight:600;
 border:1px solid currentColor}
.badge.ok{color:var(--ok)}.badge.warning{color:var(--warn)}.badge.failed,.badge.short{color:var(--bad)}
.table-wrap{overflow-x:auto;max-width:100%;border:1px solid var(--border);border-radius:8px;
 background:var(--surface)}
table{border-collapse:collapse;width:100%;font-size:.88rem}
caption{text-align:left;padding:8px 10px;font-weight:600}
th,td{padding:5px 8px;border-top:1px solid var(--border);text-align:left;vertical-align:top}
th{font-weight:600;color:var(--muted);white-space:nowrap}
th.text{color:var(--text);font-weight:500;white-space:normal;min-width:12em}
abbr[title]{text-decoration:underline dotted;cursor:help}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.text{overflow-wrap:anywhere;min-width:8em}
tr.short td{background:var(--shortbg)}
.nodata{color:var(--muted);font-style:italic;margin:6px 0}
.note{border-left:3px solid var(--warn);padding:4px 10px;background:var(--surface)}
footer{margin:32px 0 8px;font-size:.8rem;color:var(--muted)}
@media (max-width:600px){main{padding:10px}h1{font-size:1.25rem}
 .charts{grid-template-columns:minmax(0,1fr)}}
@media (max-width:1100px){.pair{grid-template-columns:minmax(0,1fr)}}
"""
)

# the theme toggle: flips the theme in effect (the system's until chosen) and remembers the
# choice where the browser allows storage (a page opened from a file may not)
SCRIPT: Final = """
(function () {
  var key = "scrapesync-report-theme", root = document.documentElement;
  var button = document.getElementById("theme-toggle");
  var dark = window.matchMedia("(prefers-color-scheme: dark)");
  function stored() { try { return localStorage.getItem(key); } catch (e) { return null; } }
  function current() {
    return root.getAttribute("data-theme") || (dark.matches ? "dark" : "light");
  }
  function show() {
    var next = current() === "dark" ? "light" : "dark";
    button.textContent = "Switch to " + next + " theme";
    button.setAttribute("aria-pressed", current() === "dark" ? "true" : "false");
  }
  var saved = stored();
  if (saved === "dark" || saved === "light") { root.setAttribute("data-theme", saved); }
  button.addEventListener("click", function () {
    var next = current() === "dark" ? "light" : "dark";
    root.setAttribute("data-theme", next);
    try { localStorage.setItem(key, next); } catch (e) { /* storage off: this view only */ }
    show();
  });
  if (dark.addEventListener) { dark.addEventListener("change", show); }
  button.hidden = false;
  show();
})();
"""
