"""`dslc report RUN_DIR`: one self-contained HTML page (spec, settings, metrics, model, every plot) that a
headless Chromium renders with every image loaded and no console errors."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA, SPECS
from dslc.cli import main

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


class Page(HTMLParser):
    """The parts of the page the tests look at: image sources, links, section ids, open tags."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self, text: str):
        super().__init__()
        self.images: list[dict] = []
        self.links: list[str] = []
        self.sections: list[str] = []
        self.stack: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "a":
            self.links.append(attrs.get("href", ""))
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def train_short(spec: str, out: Path, steps: int) -> None:
    assert main(["train", str(SPECS / f"{spec}.dlspec"), "--steps", str(steps), "--out", str(out),
                 "--data-root", str(SHARED_DATA / "mnist5k"), "--quiet", "--no-export", "--no-plots"]) == 0


@pytest.fixture(scope="module")
def thermo_report(tmp_path_factory):
    run = tmp_path_factory.mktemp("report") / "thermo"
    train_short("thermometer", run, 30)
    assert main(["report", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def cnn_report(tmp_path_factory):
    run = tmp_path_factory.mktemp("report") / "cnn"
    train_short("cnn_mnist", run, 5)
    assert main(["report", str(run)]) == 0
    return run


def test_report_is_one_self_contained_page(thermo_report):
    text = (thermo_report / "report.html").read_text()
    page = Page(text)
    assert page.stack == []
    assert page.sections == ["summary", "plots", "model", "data", "spec", "settings"]
    index = json.loads((thermo_report / "plots" / "index.json").read_text())
    assert len(index["pictures"]) == 3
    assert len(page.images) == 3 + 1                                 # every plot and the model diagram
    assert all(img["src"].startswith(("data:image/png;base64,", "data:image/svg+xml;base64,")) for img in page.images)
    assert all(link.startswith("#") for link in page.links)
    assert "@media print" in text


def test_report_holds_the_spec_settings_and_variants_side_by_side(thermo_report):
    text = (thermo_report / "report.html").read_text()
    assert html.escape((thermo_report / "spec.dlspec").read_text()) in text
    for variant in ("scaled_sgd", "raw_adam"):
        resolved = (thermo_report / "variants" / variant / "resolved.yaml").read_text()
        assert html.escape(resolved) in text
    assert "<th>scaled_sgd</th><th>raw_adam</th>" in text
    assert "<th>param w</th>" in text and "--set train.steps=30" in text
    assert "Total params: 2" in text                                  # the model table from `dslc show`


def test_report_of_a_classifier_embeds_its_plots(cnn_report):
    text = (cnn_report / "report.html").read_text()
    page = Page(text)
    assert [img["alt"] for img in page.images] == ["Training curves", "Confusion matrix", "Predictions on test images",
                                                   "Last hidden layer, PCA", "diagram of model cnn"]
    assert "test_accuracy" in text and "mnist" in text


def test_report_reuses_current_plots_and_redraws_on_request(cnn_report, tmp_path, capsys):
    curves = cnn_report / "plots" / "curves.png"
    before = curves.stat().st_mtime_ns
    out = tmp_path / "elsewhere.html"
    assert main(["report", str(cnn_report), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert curves.stat().st_mtime_ns == before and out.is_file()
    assert main(["report", str(cnn_report), "--out", str(out), "--replot"]) == 0
    assert curves.stat().st_mtime_ns > before


def test_report_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "is not a dslc run directory" in capsys.readouterr().err


# ---------------------------------------------------------------- in a real browser

PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && e.target.outerHTML
  && e.target.outerHTML.slice(0, 80)) || e.type)), true);
window.addEventListener('unhandledrejection', e => window.__errors.push('rejection: ' + e.reason));
for (const level of ['error', 'warn']) {
  const original = console[level];
  console[level] = (...args) => { window.__errors.push(level + ': ' + args.join(' ')); original(...args); };
}
window.addEventListener('load', () => {
  const images = [...document.images].map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0,
                                                width: i.naturalWidth, shown: i.getBoundingClientRect().width}));
  const probe = document.createElement('pre');
  probe.id = '__probe';
  probe.textContent = JSON.stringify({images, errors: window.__errors, height: document.body.scrollHeight});
  document.body.appendChild(probe);
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (`make browser` installs the Debian package "
                                             "`chromium`); the report was not checked in a browser")
def test_report_renders_in_chromium_with_every_image_and_no_console_errors(cnn_report, tmp_path):
    text = (cnn_report / "report.html").read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1))
    done = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    start = done.stdout.index('<pre id="__probe">') + len('<pre id="__probe">')
    probe = json.loads(html.unescape(done.stdout[start:done.stdout.index("</pre>", start)]))
    assert len(probe["images"]) == 5
    assert all(img["ok"] and img["width"] > 100 and img["shown"] > 100 for img in probe["images"]), probe["images"]
    assert probe["errors"] == []
    assert probe["height"] > 2000
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console

    shot = tmp_path / "report.png"
    done = chromium(tmp_path, "--hide-scrollbars", "--window-size=1200,1600", f"--screenshot={shot}",
                    (cnn_report / "report.html").as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line for line in done.stderr.splitlines() if ":CONSOLE" in line] == []
    with Image.open(shot) as image:
        assert image.size == (1200, 1600)
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    assert pixels.std() > 10                               # text, tables and plots, not a blank page
    assert (pixels < 128).mean() > 0.01                    # a fair amount of dark ink
