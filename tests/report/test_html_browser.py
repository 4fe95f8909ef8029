"""The report in a real browser: headless Chromium renders it; every image must load and every section be there.

Chromium (Debian's ``chromium`` package) is installed by the set-up step for tests (``.ci/run``); the test is
skipped only where no Chromium binary is found. The report itself has no script: the test renders a copy of it
with a checking script added, which writes what the browser sees into the DOM that ``--dump-dom`` prints.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from alva.report import eps_curve_plot
from alva.report.html import write_report

CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({complete: i.complete, width: i.naturalWidth,
                                                 height: i.naturalHeight, alt: i.alt}));
  const sections = [...document.querySelectorAll("section[id]")].map(s => ({
    id: s.id, height: s.getBoundingClientRect().height, title: (s.querySelector("h2") || {}).textContent || "",
    tables: s.querySelectorAll("table").length}));
  const fetched = performance.getEntriesByType("resource").map(r => r.name);
  const pre = document.createElement("pre");
  pre.id = "alva-check";
  pre.textContent = JSON.stringify({title: document.title, images, sections, fetched});
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str | None:
    candidates = [os.environ.get("ALVA_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome", "chrome"]
    return next((shutil.which(c) for c in candidates if c and shutil.which(c)), None)


def render(page: Path, tmp_path: Path) -> dict:
    """What the browser saw of ``page`` (a copy of it with the checking script)."""
    binary = chromium()
    if binary is None:
        pytest.skip("no Chromium binary found (install Debian's chromium package: apt-get install chromium)")
    checked = tmp_path / f"checked-{page.name}"
    checked.write_text(page.read_text().replace("</body>", CHECK + "\n</body>"))
    done = subprocess.run([binary, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                           "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
                          capture_output=True, text=True, timeout=60)
    match = re.search(r'<pre id="alva-check">(.*?)</pre>', done.stdout, re.S)
    assert match, f"the checking script did not run: rc {done.returncode}\n{done.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


def make_run(root: Path) -> Path:
    """A demo-like run folder with real matplotlib images and a training log (a plot made by the report)."""
    curve = [{"eps": e, "robust_acc": 1 - 3 * e} for e in (0.0, 0.1, 0.2, 0.3)]
    report = {"attack": "fgsm", "n": 10, "clean_acc": 1.0, "robust_acc": 0.1, "success_rate": 0.9,
              "confidence_misclassified": 0.8, "per_class": {"0": {"n": 10, "clean_acc": 1.0, "robust_acc": 0.1}}}
    root.mkdir(parents=True)
    (root / "summary.json").write_text(json.dumps({"clean_test_acc": 0.98, "attacks": {"fgsm": report},
                                                   "eps_curves": {"fgsm": curve}}))
    eps_curve_plot(root / "eps_curve.png", {"FGSM": curve}, title="<robust & accuracy>")
    (root / "fgsm").mkdir()
    (root / "fgsm" / "result.json").write_text(json.dumps({"report": report, "eps_curve": curve, "seconds": 1}))
    shutil.copy(root / "eps_curve.png", root / "fgsm" / "grid.png")
    (root / "train").mkdir()
    (root / "train" / "model.json").write_text(json.dumps({"architecture": "cnn-small", "command": "alva demo"}))
    (root / "train" / "metrics.jsonl").write_text("".join(
        json.dumps({"step": e, "epoch": e, "train": {"loss": 1 / e, "acc": 0.9}, "eval": {"clean_acc": 0.95}}) + "\n"
        for e in (1, 2, 3)))
    return root


def test_every_image_loads_and_every_section_is_there_in_chromium(tmp_path):
    page = write_report(make_run(tmp_path / "run <demo>"))
    seen = render(page, tmp_path)
    assert seen["title"] == "alva report: run <demo>"
    assert [s["id"] for s in seen["sections"]] == ["summary", "fgsm", "train"]
    assert all(s["height"] > 0 and s["title"] and s["tables"] > 0 for s in seen["sections"])
    assert len(seen["images"]) == 3  # eps_curve.png, fgsm/grid.png and the training plot
    for image in seen["images"]:
        assert image["complete"] and image["width"] > 100 and image["height"] > 100, image
    assert seen["fetched"] == []  # self-contained: the browser fetched nothing


def test_the_check_sees_a_broken_image(tmp_path):
    """The check is not vacuous: an image that does not decode has naturalWidth 0 in the browser."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><section id="a"><img src="data:image/png;base64,iVBORw0KGgoAAAA" '
                    'alt="broken"></section></body></html>')
    seen = render(page, tmp_path)
    assert [s["id"] for s in seen["sections"]] == ["a"]
    assert seen["images"][0]["width"] == 0
