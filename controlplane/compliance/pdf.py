"""A gap report as PDF: WeasyPrint from an HTML template, with the DejaVu fonts shipped in
fonts/ (so the output does not depend on the host's fonts) and an inline SVG chart."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import mark_safe

from controlplane.compliance.catalog import load_catalogs
from controlplane.compliance.models import ControlStatus, GapReport, SignOffRole

FONT_DIR = Path(__file__).resolve().parent / "fonts"
COLOURS = {
    "met": "#2e7d32", "partial": "#f9a825", "gap": "#c62828", "not_tested": "#8d6e63", "manual": "#5c6bc0",
    "not_applicable": "#9e9e9e",
}
# The chart's drawing box, in SVG user units (px); every label must fit inside it.
CHART_WIDTH, CHART_HEIGHT = 460, 190
BAR_X, BAR_MAX = 300, 110
LABEL_GAP = 6
LABELS = dict(ControlStatus.choices)
# Short labels for the chart, where the long ones would not fit.
CHART_LABELS = {"met": "Met", "partial": "Partially met", "gap": "Gap", "not_tested": "Not tested",
                "manual": "Attestation needed", "not_applicable": "Not applicable"}

# fontTools logs every glyph it keeps at INFO while WeasyPrint subsets the fonts.
logging.getLogger("fontTools").setLevel(logging.WARNING)
logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)
ORDER = ["met", "partial", "gap", "not_tested", "manual", "not_applicable"]
# Objects listed per evidence kind in the appendix (the evidence package lists every one): table layout is
# most of WeasyPrint's time, and the full list is one API call away.
PDF_OBJECTS_PER_KIND = 5
PDF_PROBES_PER_KIND = 3


def _arc(cx: float, cy: float, r: float, start: float, end: float) -> str:
    """An SVG path for a donut segment from angle `start` to `end` (radians, clockwise from 12 o'clock)."""
    inner = r * 0.6
    large = 1 if end - start > math.pi else 0

    def point(radius, angle):
        return cx + radius * math.sin(angle), cy - radius * math.cos(angle)

    x1, y1 = point(r, start)
    x2, y2 = point(r, end)
    x3, y3 = point(inner, end)
    x4, y4 = point(inner, start)
    return (f"M{x1:.2f},{y1:.2f} A{r},{r} 0 {large} 1 {x2:.2f},{y2:.2f} L{x3:.2f},{y3:.2f} "
            f"A{inner},{inner} 0 {large} 0 {x4:.2f},{y4:.2f} Z")


def summary_chart(summary: dict) -> str:
    """A donut of control statuses with the score and coverage in its centre, and a bar per
    status with its count (`n=…`) — all inside the drawing: the longest bar leaves room for
    its label (the old chart put the widest bar's count past the right edge)."""
    counts = [(status, int(summary.get(status, 0) or 0)) for status in ORDER]
    total = sum(n for _, n in counts) or 1
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
              f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" font-family="Warden Sans">')]
    angle = 0.0
    for status, n in counts:
        if not n:
            continue
        sweep = 2 * math.pi * n / total
        if sweep >= 2 * math.pi - 1e-6:  # a full ring cannot be one arc
            parts.append(f'<circle cx="80" cy="95" r="58" fill="none" stroke="{COLOURS[status]}" stroke-width="29"/>')
        else:
            parts.append(f'<path d="{_arc(80, 95, 72, angle, angle + sweep)}" fill="{COLOURS[status]}"/>')
        angle += sweep
    score = summary.get("score")
    coverage = summary.get("coverage")
    parts.append(f'<text x="80" y="94" text-anchor="middle" font-size="15" font-weight="bold">'
                 f'{"–" if score is None else f"{score:g}%"}</text>')
    parts.append(f'<text x="80" y="108" text-anchor="middle" font-size="7">'
                 f'{"score" if score is not None else "no score"} · cov. {"–" if coverage is None else f"{coverage:g}%"}'
                 '</text>')
    widest = max((n for _, n in counts), default=1) or 1
    for row, (status, n) in enumerate(counts):
        y = 12 + row * 29
        width = BAR_MAX * n / widest
        parts.append(f'<text x="172" y="{y + 13}" font-size="10">{escape(CHART_LABELS[status])}</text>')
        parts.append(f'<rect x="{BAR_X}" y="{y}" width="{max(width, 1):.1f}" height="18" fill="{COLOURS[status]}"/>')
        parts.append(f'<text x="{BAR_X + max(width, 1) + LABEL_GAP:.1f}" y="{y + 13}" font-size="10">n={n}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_report_html(report: GapReport) -> str:
    framework = load_catalogs()[report.framework]
    results = list(report.results.order_by("position"))
    # Each evidence kind was collected once; the appendix shows it once, with every control it serves.
    appendix: dict[str, dict] = {}
    for result in results:
        for item in result.evidence:
            entry = appendix.setdefault(item["kind"], {
                **item, "objects": item["objects"][:PDF_OBJECTS_PER_KIND], "controls": [],
                "probes": [{**p, "input_json": json.dumps(p.get("input"), sort_keys=True)}
                           for p in (item.get("probes") or [])[:PDF_PROBES_PER_KIND]],
                "probes_total": len(item.get("probes") or []),
            })
            entry["controls"].append(result.control_id)
    sign_offs = {s.role: s for s in report.sign_offs.select_related("user")}
    return render_to_string("compliance/report.html", {
        "sign_offs": [(role, label, sign_offs.get(role)) for role, label in SignOffRole.choices],
        "report": report,
        "framework": framework,
        "results": results,
        "chart": mark_safe(summary_chart(report.summary)),  # built from numbers and escaped labels only
        "colours": COLOURS,
        "labels": LABELS,
        "order": [(s, LABELS[s], report.summary.get(s, 0)) for s in ORDER],
        "appendix": [appendix[k] for k in sorted(appendix) if k != "manual"],
        "font_dir": FONT_DIR.as_uri(),
    })


def render_report_pdf(report: GapReport) -> bytes:
    from weasyprint import HTML  # heavy import; only the builder and the download need it

    return HTML(string=render_report_html(report), base_url=str(FONT_DIR)).write_pdf()
