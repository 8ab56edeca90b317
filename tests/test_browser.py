"""The explorer in a real browser: JupyterLab started as `make lab` starts it, driven by keys.

Marked slow and skipped without Chromium (Debian's ``chromium`` package) or Playwright (the
``test`` extra). Run it alone with ``.venv/bin/python -m pytest tests/test_browser.py -m slow``.
The notebook it opens builds an explorer over two registry names without loading either (no
text is shown until one is typed), so the test is about keys and focus, not models.
"""

import json
import shutil
import time
import uuid
from pathlib import Path

import pytest

from memrecall.jupyter import serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed")]

ROOT = Path(__file__).resolve().parents[1]
CELL = ('import ipywidgets\n'
        'from memrecall.jupyter import widgets\n'
        'display(widgets.Explorer(["tiny-gpt2", "tiny-llama", "tiny-qwen2"], [],'
        ' loader=lambda name: None).widget())\n'
        'display(ipywidgets.Dropdown(options=["p", "q", "r"]))  # a control without the guard')
# keys JupyterLab binds in command mode: a/b insert cells, x cuts, d d deletes, arrows move
NOTEBOOK_KEYS = ["ArrowDown", "ArrowUp", "ArrowDown", "a", "b", "x", "d", "d", "m", "y"]


@pytest.fixture()
def probe_notebook():
    name = f"_browser_probe_{uuid.uuid4().hex[:8]}.ipynb"
    path = ROOT / "notebooks" / name
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "id": "probe",
                           "metadata": {}, "outputs": [], "source": CELL}],
                "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                            "name": "python3"}},
                "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(notebook), encoding="utf-8")
    yield name
    path.unlink(missing_ok=True)


def test_keys_on_the_explorer_never_reach_the_notebook(probe_notebook, tmp_path):
    started = time.monotonic()
    server = serve.start_lab(ROOT, serve.free_port(18900), log=tmp_path / "lab.log")
    lab_start = time.monotonic() - started
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            # ?reset: a fresh workspace, not the layout an earlier session left
            page.goto(f"{server.base}/lab/tree/notebooks/{probe_notebook}"
                      f"?reset&token={server.token}")
            cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
            page.locator(".jp-NotebookPanel .jp-CodeCell").first.wait_for(timeout=90_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=90_000)
            time.sleep(2)  # the kernel's connection settles after "idle" is first shown
            page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt").first.click()
            page.keyboard.press("Shift+Enter")  # runs the cell (and adds one below: Lab's way)
            box = page.locator(".memrecall-explorer")
            box.wait_for(timeout=90_000)
            n_cells = cells.count()

            model = box.locator("select").first
            model.focus()
            for key in NOTEBOOK_KEYS:
                page.keyboard.press(key)
            assert cells.count() == n_cells  # no cell inserted, cut or deleted
            assert model.evaluate("el => el === document.activeElement")  # focus stayed
            assert model.input_value() == "tiny-llama"  # the arrows moved the choice

            text = box.locator("input[type='text']").first
            text.click()
            text.fill("")
            page.keyboard.type("a bad x")
            assert text.input_value() == "a bad x" and cells.count() == n_cells

            # the same keys on a control without the guard do reach the notebook: the check
            # above can fail (Lab inserts cells for `a` and `b`, the arrows move the selection)
            plain = page.locator(".jp-OutputArea select").last
            plain.focus()
            for key in ["ArrowDown", "a", "b"]:
                page.keyboard.press(key)
            assert cells.count() == n_cells + 2 and plain.input_value() == "p"
            page.keyboard.press("Escape")
            page.keyboard.press("Control+s")  # Ctrl+S still reaches JupyterLab: it saves
            page.wait_for_function(
                "() => !document.querySelector('.jp-mod-dirty.jp-Document')", timeout=30_000)
            browser.close()
    finally:
        server.stop()
    print(f"JupyterLab answered in {lab_start:.1f} s")
