"""`dslc report RUN_DIR`: one self-contained report.html for a trained run.

The page holds the run's facts (status, device, steps, wall time, hash), the
final metrics (variants side by side), the data, the model table and diagram,
every plot, the spec as written and the resolved settings. Images are embedded
as base64 data URIs, so the file can be mailed or archived alone; the CSS
reads well in a browser and in print. Plots are drawn first when RUN_DIR/plots
is missing or older than the run's summary.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path

from dslc.errors import UserError

from dslc.runtime.pictures.plots import PLOTS_DIR, RunContext, configurations, make_plots
from dslc.runtime.training.run_dir import read_summary

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dde2ea; --soft: #f5f7fa; --accent: #2f5ea8; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 32px 60px; }
header h1 { margin: 0 0 4px; font-size: 28px; letter-spacing: -0.01em; }
header p { margin: 0; color: var(--muted); }
nav { margin: 18px 0 8px; display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; }
nav a:hover { text-decoration: underline; }
section { margin-top: 34px; }
h2 { font-size: 19px; margin: 0 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 0 0 8px; color: var(--muted); }
table { border-collapse: collapse; font-size: 14px; margin: 4px 0 10px; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.facts th { background: none; color: var(--muted); font-weight: 500; width: 11em; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px;
      overflow-x: auto; font: 12.5px/1.45 "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
figure { margin: 18px 0; padding: 12px; border: 1px solid var(--line); border-radius: 8px; text-align: center; }
figure img { max-width: 100%; height: auto; }
figure.diagram img { max-height: 900px; }
figcaption { margin-top: 6px; color: var(--muted); font-size: 13px; }
.notice { background: #fff8e1; border: 1px solid #f1d98a; border-radius: 6px; padding: 8px 12px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 0 24px; align-items: start; }
details summary { cursor: pointer; color: var(--accent); margin: 8px 0; }
footer { margin-top: 48px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 10px; }
@media print {
  @page { margin: 14mm; }
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  section { break-inside: auto; }
  h2 { break-after: avoid; }
  figure, table, pre { break-inside: avoid; }
  figure { border: none; padding: 0; }
  pre { white-space: pre-wrap; word-break: break-word; font-size: 8.5pt; }
  a { color: inherit; text-decoration: none; }
}
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "-" if v is None else str(v)


def _wall(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    return f"{seconds:.1f} s" if seconds < 120 else time.strftime("%H:%M:%S", time.gmtime(seconds))


# ---------------------------------------------------------------- sections


def _facts_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="facts">{body}</table>'


def _run_facts(run_dir: Path, summary: dict, configs) -> str:
    first = configs[0].summary
    variants = summary.get("variants") or {}
    steps = summary.get("steps")
    rows = [("spec", f"<code>{_e(summary.get('spec'))}</code>"),
            ("run directory", f"<code>{_e(run_dir.resolve())}</code>"),
            ("finished", _e(str(first.get("finished") or "-").replace("T", " "))),
            ("status", _e(", ".join(sorted({str(c.summary.get('status')) for c in configs})))),
            ("variants", _e(", ".join(variants)) if variants else None),
            ("steps", _e(", ".join(f"{k} {v}" for k, v in steps.items()) if isinstance(steps, dict) else _fmt(steps))),
            ("epochs", _e(_epochs(summary.get("epochs")))),
            ("wall time", _e(_wall(summary.get("wall_seconds")))),
            ("device", _e(f"{first.get('device')} ({first.get('precision', 'fp32')})")),
            ("seed", _e(_fmt(summary.get("seed")))),
            ("overrides", _e(" ".join(f"--set {o}" for o in summary.get("overrides") or []) or "none")),
            ("spec hash", f"<code>{_e(str(summary.get('spec_hash', ''))[:16])}</code>"),
            ("dslc", _e(first.get("dslc_version", "-")))]
    return _facts_table([(k, v) for k, v in rows if v is not None])


def _epochs(epochs) -> str:
    if isinstance(epochs, dict):
        return ", ".join(f"{k} {_fmt(round(v, 3) if isinstance(v, float) else v)}" for k, v in epochs.items())
    return _fmt(round(epochs, 3) if isinstance(epochs, float) else epochs)


def _metrics_section(configs) -> str:
    """One table of the figures of each configuration's chosen checkpoint (the one eval and export use): a
    column per configuration, a row per metric, then scalar params, the checkpoint, steps and wall time;
    then, where the run went on after that checkpoint, the figures at its last step."""
    from dslc.runtime.training.progress import chosen
    keys: list[str] = []
    params: list[str] = []
    for c in configs:
        keys += [k for k in c.summary.get("metrics") or {} if k not in keys]
        params += [k for k in c.summary.get("params") or {} if k not in params]
    several = len(configs) > 1
    head = "<tr><th></th>" + "".join(f"<th>{_e(c.name or 'value')}</th>" for c in configs) + "</tr>"
    rows = []
    for k in keys:
        rows.append(f"<tr><th>{_e(k)}</th>" + "".join(
            f'<td class="num">{_e(_fmt((c.summary.get("metrics") or {}).get(k)))}</td>' for c in configs) + "</tr>")
    for k in params:
        rows.append(f"<tr><th>param {_e(k)}</th>" + "".join(
            f'<td class="num">{_e(_fmt((c.summary.get("params") or {}).get(k)))}</td>' for c in configs) + "</tr>")
    selections = [c.summary.get("selection") for c in configs]
    if any(selections):
        rows.append("<tr><th>checkpoint</th>" + "".join(
            f'<td class="num">{_e(chosen(s) if s else "-")}</td>' for s in selections) + "</tr>")
    if several:
        rows.append("<tr><th>steps</th>" + "".join(
            f'<td class="num">{_e(_fmt(c.summary.get("steps")))}</td>' for c in configs) + "</tr>")
        rows.append("<tr><th>wall time</th>" + "".join(
            f'<td class="num">{_e(_wall(c.summary.get("wall_seconds")))}</td>' for c in configs) + "</tr>")
    if not rows:
        return "<p>No metrics were recorded.</p>"
    out = f'<table class="metrics">{head}{"".join(rows)}</table>'
    finals = [c.summary.get("final_metrics") for c in configs]
    if any(finals):
        keys = list(dict.fromkeys(k for f in finals if f for k in f))
        body = "".join(f"<tr><th>{_e(k)}</th>" + "".join(
            f'<td class="num">{_e(_fmt((f or {}).get(k)))}</td>' for f in finals) + "</tr>" for k in keys)
        steps = ", ".join(str(c.summary.get("steps")) for c in configs)
        out += f"<h3>At the last step (last.pt, step {_e(steps)})</h3><table>{head}{body}</table>"
    return out


def _data_section(configs) -> str:
    info = configs[0].summary.get("data") or {}
    if not info:
        return "<p>No data information was recorded.</p>"
    counts = info.get("counts") or {}
    splits = info.get("splits") or {}
    rows = [("source", f"<code>{_e(info.get('source'))}</code>"),
            ("read from", f"<code>{_e(info.get('root'))}</code>" if info.get("root") else "the spec itself"),
            ("samples", _e(", ".join(f"{k} {v}" + (f" ({splits[k]})" if k in splits else "")
                                     for k, v in counts.items() if v))),
            ("inputs", _e(", ".join(info.get("inputs") or []))),
            ("targets", _e(", ".join(info.get("targets") or []))),
            ("classes", _e(", ".join(info.get("labels") or [])) if info.get("labels") else None),
            ("units", _e("; ".join(f"metrics of {t} are in the units of {u['column']} (the loss in {t}'s)"
                                   for t, u in (info.get("units") or {}).items())) if info.get("units") else None),
            ("missing values", _e("dropped rows missing " + ", ".join(f"{k} ({v})" for k, v in
                                                                    info["dropped_missing"].items()))
             if info.get("dropped_missing") else None),
            ("fingerprint", f"<code>{_e(str(info.get('fingerprint', ''))[:16])}</code>")]
    out = _facts_table([(k, v) for k, v in rows if v is not None])
    if info.get("notice"):
        out += f'<p class="notice">{_e(info["notice"])}</p>'
    return out


def _model_section(configs) -> str:
    """The model table and diagram; variants that change the model get their own."""
    from dslc.compiler.graph import draw_graph, model_graph
    from dslc.compiler.show import model_table
    seen: dict[str, list] = {}
    for c in configs:
        seen.setdefault(model_table(c.checked), []).append(c)
    parts = []
    for table, group in seen.items():
        if len(seen) > 1:
            parts.append(f"<h3>{_e(', '.join(c.name for c in group))}</h3>")
        buffer = io.BytesIO()
        draw_graph(model_graph(group[0].checked.model), buffer, "svg")
        uri = _data_uri(buffer.getvalue(), "image/svg+xml")
        parts.append(f'<div class="grid"><pre>{_e(table)}</pre>'
                     f'<figure class="diagram"><img src="{uri}" alt="diagram of model {_e(group[0].checked.model.name)}">'
                     f"<figcaption>model {_e(group[0].checked.model.name)}</figcaption></figure></div>")
    return "".join(parts)


def _plots_section(folder: Path) -> str:
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    parts = []
    for p in index["pictures"]:
        path = folder / p["file"]
        if not path.is_file():
            continue
        uri = _data_uri(path.read_bytes(), "image/png")
        parts.append(f'<figure><img src="{uri}" alt="{_e(p["title"])}"><figcaption>{_e(p["title"])} '
                     f'(<code>{_e(p["file"])}</code>)</figcaption></figure>')
    for s in index.get("skipped", []):
        parts.append(f'<p class="notice">{_e(s["file"])} was not drawn: {_e(s["why"])}</p>')
    return "".join(parts) or "<p>No plots apply to this run.</p>"


def _settings_section(configs) -> str:
    parts = []
    for c in configs:
        path = c.path / "resolved.yaml"
        if not path.is_file():
            continue
        text = _e(path.read_text(encoding="utf-8"))
        if len(configs) > 1:
            parts.append(f"<details open><summary>{_e(c.name)}</summary><pre>{text}</pre></details>")
        else:
            parts.append(f"<pre>{text}</pre>")
    return "".join(parts) or "<p>No resolved settings were recorded.</p>"


def _spec_text(run_dir: Path) -> str:
    for name in ("spec.dlspec", "spec.yaml"):
        if (run_dir / name).is_file():
            return (run_dir / name).read_text(encoding="utf-8")
    raise UserError(f"{run_dir} has no spec.dlspec")


# ---------------------------------------------------------------- the page


def plots_current(run_dir: Path) -> bool:
    """True when plots/index.json exists and is newer than the run's summary."""
    index = run_dir / PLOTS_DIR / "index.json"
    return index.is_file() and index.stat().st_mtime >= (run_dir / "summary.json").stat().st_mtime


def write_report(run_dir: str | Path, out: str | Path | None = None, data_root=None, replot: bool = False,
                 log=None) -> Path:
    """Write RUN_DIR/report.html (or `out`); draws the plots first when they are missing or stale."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if replot or not plots_current(run_dir):
        make_plots(run_dir, data_root=data_root, log=log)
    configs = configurations(run_dir, RunContext(run_dir, summary, data_root))
    name = Path(summary.get("spec") or run_dir.name).stem
    sections = [
        ("summary", "Summary", f'<div class="grid"><div>{_run_facts(run_dir, summary, configs)}</div><div>'
                               f'<h3>Metrics of the chosen checkpoint{" by variant" if len(configs) > 1 else ""}</h3>'
                               f"{_metrics_section(configs)}</div></div>"),
        ("plots", "Plots", _plots_section(run_dir / PLOTS_DIR)),
        ("model", "Model", _model_section(configs)),
        ("data", "Data", _data_section(configs)),
        ("spec", "Spec as written", f"<pre>{_e(_spec_text(run_dir))}</pre>"),
        ("settings", "Resolved settings", _settings_section(configs)),
    ]
    nav = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{_e(title)}</h2>{content}</section>' for key, title, content in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(name)} — dslc run report</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            f"<header><h1>{_e(name)}</h1><p>dslc run report · {_e(run_dir.name)}</p></header>\n"
            f"<nav>{nav}</nav>\n{body}\n"
            f"<footer>Written by dslc {_e(configs[0].summary.get('dslc_version', ''))} on "
            f"{_e(time.strftime('%Y-%m-%d %H:%M'))}. Everything on this page is inside this one file.</footer>\n"
            "</main>\n</body>\n</html>\n")
    path = Path(out) if out is not None else run_dir / "report.html"
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from None
    return path
