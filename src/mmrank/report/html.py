"""One self-contained HTML file from ``audit.json``: verdict and reasons first, then every
check with its value beside its threshold, then the plots (inline PNG), then the evidence.

No script, stylesheet, font or image is fetched from anywhere: the file can be mailed or
archived and still shows everything.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from mmrank.atomic_io import atomic_write_text
from mmrank.audit.result import display_value, systems_line
from mmrank.errors import DataError
from mmrank.report import plots

_COLORS = {"GO": "#276749", "PAUSE_AND_FIX": "#b7791f", "NO_GO": "#c53030",
           "PASS": "#276749", "WARN": "#b7791f", "FAIL": "#c53030", "SKIP": "#718096"}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#1a202c}
.verdict{padding:1em 1.5em;color:#fff;border-radius:6px;font-size:1.6em;font-weight:700}
table{border-collapse:collapse;width:100%;margin:1em 0;font-size:.92em}
td,th{border-bottom:1px solid #e2e8f0;padding:.35em .5em;text-align:left;vertical-align:top}
.status{font-weight:700} figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
figcaption{font-size:.9em;color:#4a5568} pre{background:#f7fafc;padding:.6em;overflow:auto;font-size:.8em}
"""


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4g}"
    return html.escape(str(x))


def render(audit: dict) -> str:
    """The audit as one self-contained HTML page: verdict, reasons, a table of checks (value,
    threshold, rule, advice), the inline plots, each check's evidence, run meta and policy.

    Args:
        audit: an ``AuditReport.to_dict()`` / ``audit.json`` mapping; ``verdict`` and ``checks``
            are required, the rest optional.

    Returns:
        The HTML text, every value escaped."""
    verdict = audit["verdict"]
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>mmrank audit: {e(verdict)}</title><style>{_CSS}</style></head><body>",
        f"<h1>mmrank integrity audit</h1><p id='systems'>{e(systems_line(audit.get('meta', {})))}</p>"
        f"<div class='verdict' id='verdict' style='background:{_COLORS.get(verdict, '#4a5568')}'>{e(verdict)}</div>",
        "<h2>Reasons</h2><ul id='reasons'>", *[f"<li>{e(r)}</li>" for r in audit.get("reasons", [])], "</ul>",
        "<h2>Checks</h2><table id='checks'><tr><th>check</th><th>status</th><th>value</th><th>threshold</th><th>rule</th><th>advice</th></tr>",
    ]
    for c in audit["checks"]:
        reason = c.get("evidence", {}).get("reason", "") if c["status"] == "SKIP" else ""
        parts.append(
            f"<tr><td>{e(c['name'])}</td><td class='status' style='color:{_COLORS.get(c['status'], '#000')}'>{e(c['status'])}</td>"
            f"<td>{e(display_value(c))}</td><td>{_fmt(c.get('threshold'))}</td><td>{e(c.get('rule') or '')}</td>"
            f"<td>{e(c.get('advice') or reason)}</td></tr>")
    parts.append("</table><h2>Plots</h2><div id='plots'>")
    extras = audit.get("extras", {})
    for draw in plots.ALL:
        made = draw(extras)
        if made is not None:
            title, uri = made
            parts.append(f"<figure><img src='{uri}' alt='{e(title)}'><figcaption>{e(title)}</figcaption></figure>")
    parts.append("</div><h2>Evidence</h2>")
    for c in audit["checks"]:
        parts.append(f"<details><summary>{e(c['name'])} — {e(c['status'])}</summary><pre>"
                     f"{e(json.dumps(c.get('evidence', {}), indent=2))}</pre></details>")
    meta = audit.get("meta", {})
    parts.append(f"<h2>Run</h2><pre>{e(json.dumps(meta, indent=2))}</pre>")
    parts.append(f"<details><summary>policy</summary><pre>{e(json.dumps(audit.get('policy', {}), indent=2))}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(audit_dir: str | Path, audit: dict | None = None) -> Path:
    """Write ``report.html`` next to ``audit.json`` (read from there when not given)."""
    audit_dir = Path(audit_dir)
    if audit is None:
        path = audit_dir / "audit.json"
        try:
            audit = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read the audit: {err}", path=path,
                            hint="run `mmrank audit ... --out DIR` first, then `mmrank report DIR`") from err
    if "verdict" not in audit or "checks" not in audit:
        raise DataError("not an mmrank audit (no verdict/checks)", path=audit_dir / "audit.json")
    return atomic_write_text(audit_dir / "report.html", render(audit))
