"""The explorer in a real browser: JupyterLab started as `make lab` starts it, driven by keys.

Marked slow and skipped without Chromium (Debian's ``chromium`` package) or Playwright (the
``test`` extra). Run it alone with ``.venv/bin/python -m pytest tests/test_browser.py -m slow``.
The first test opens a one-cell notebook with an explorer over registry names it never loads:
keys and focus only. The second runs notebook 03 in quick mode on Gemma 3 and drives its
explorer by keys (a fragment, a suggestion, a model switch, compare, export), prints timings and
saves a screenshot of the compare view in its temporary folder; with
``MEMRECALL_SCREENSHOT=figures/explorer_compare.png`` it refreshes README's picture instead (a
test run never rewrites a committed file unasked).
"""

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def opened_in_lab(notebook: str, tmp_path: Path, first_port: int,
                  viewport: dict[str, int], timeout_ms: int = 120_000) -> Iterator:
    """JupyterLab as `make lab` starts it, ``notebooks/<notebook>`` open in Chromium with its
    kernel idle; yields ``(page, seconds Lab took to answer)`` and stops both afterwards."""
    started = time.monotonic()
    server = serve.start_lab(ROOT, log=tmp_path / "lab.log", first_port=first_port)
    lab_start = time.monotonic() - started
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport=viewport)
            # ?reset: a fresh workspace, not the layout an earlier session left
            page.goto(f"{server.base}/lab/tree/notebooks/{notebook}?reset&token={server.token}")
            page.locator(".jp-NotebookPanel .jp-CodeCell").first.wait_for(timeout=timeout_ms)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=timeout_ms)
            time.sleep(2)  # the kernel's connection settles after "idle" is first shown
            yield page, lab_start
            browser.close()
    finally:
        server.stop()


def test_keys_on_the_explorer_never_reach_the_notebook(probe_notebook, tmp_path):
    with opened_in_lab(probe_notebook, tmp_path, 18900, {"width": 1400, "height": 900},
                       timeout_ms=90_000) as (page, lab_start):
        cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
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
    print(f"JupyterLab answered in {lab_start:.1f} s")


# --------------------------------------------------------------------------- notebook 03, by keys

QUICK = {"profile": '"offline"', "models": '"gemma-3-270m"', "quick": "True"}
SECOND_MODEL = "smollm2-135m"  # quick mode runs one model; the profile's other, loaded on demand
SCREENSHOT_ENV = "MEMRECALL_SCREENSHOT"  # where to keep the compare view (README's picture)


def _quick_copy(tmp_path: Path) -> str:
    """A copy of notebook 03 in notebooks/: quick, Gemma 3, offline, outputs under tmp_path."""
    notebook = json.loads((ROOT / "notebooks" / "03_layerwise_projection.ipynb").read_text())
    values = QUICK | {"figures_dir": repr(str(tmp_path / "figures")),
                      "results_dir": repr(str(tmp_path / "results"))}
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            lines = []
            for line in source.splitlines():
                name = line.split("=")[0].strip()
                lines.append(f"{name} = {values[name]}" if name in values else line)
            source = "\n".join(lines)
        source = source.replace("widgets.idiom_explorer([*run.models[:-1], lm]",
                                f"widgets.idiom_explorer([*run.models[:-1], lm, {SECOND_MODEL!r}]")
        cell["source"] = source
    name = f"_browser_03_{uuid.uuid4().hex[:8]}.ipynb"
    (ROOT / "notebooks" / name).write_text(json.dumps(notebook), encoding="utf-8")
    return name


def _src(page) -> str:
    return page.locator(".memrecall-explorer img").first.get_attribute("src") or ""


def _wait_new_picture(page, old: str, timeout_s: float = 120) -> float:
    started = time.monotonic()
    page.wait_for_function(
        "old => { const img = document.querySelector('.memrecall-explorer img');"
        " return img && img.src && img.src !== old && img.naturalWidth > 0; }",
        arg=old, timeout=timeout_s * 1000)
    return time.monotonic() - started


def _all_cells_in_page(tmp_path: Path, monkeypatch) -> None:
    """Lab renders only the cells near the viewport by default: count them all in the page."""
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    news = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)  # no "get notified about Jupyter news?" over the screenshot
    (news / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    monkeypatch.setenv("JUPYTERLAB_SETTINGS_DIR", str(tmp_path / "lab-settings"))


def _settled(page, *words: str, timeout_s: float = 120) -> None:
    """Wait until the explorer's status line is a verdict (no "reading…"/"loading…") naming
    ``words``: every change the kernel queued has been drawn."""
    page.wait_for_function(
        "words => { const s = document.querySelector('.memrecall-explorer .memrecall-status');"
        " return s && !s.innerText.includes('…') && words.every(w => s.innerText.includes(w)); }",
        arg=list(words), timeout=timeout_s * 1000)


def test_notebook_03_quick_explorer_by_keyboard(tmp_path, monkeypatch):
    _all_cells_in_page(tmp_path, monkeypatch)
    name = _quick_copy(tmp_path)
    timings = {}
    try:
        with opened_in_lab(name, tmp_path, 18950, {"width": 1500, "height": 1000}) as (
                page, timings["Lab start"]):
            cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
            n_cells = cells.count()
            assert n_cells == len(json.loads((ROOT / "notebooks" / name).read_text())["cells"])

            started = time.monotonic()  # Run All, from Lab's Run menu
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            box = page.locator(".memrecall-explorer")
            box.wait_for(timeout=600_000)
            page.wait_for_function(
                "() => { const img = document.querySelector('.memrecall-explorer img');"
                " return img && img.src && img.naturalWidth > 0; }", timeout=300_000)
            timings["Run All -> first picture"] = time.monotonic() - started
            assert cells.count() == n_cells

            # type a fragment, arrow to a suggestion, Enter
            search = box.locator(".memrecall-search-input")
            search.focus()
            search.fill("")
            page.keyboard.type("the", delay=30)
            items = box.locator(".memrecall-search-item")
            items.first.wait_for(timeout=30_000)
            count = box.locator(".memrecall-search-count").inner_text()
            assert "match" in count, count
            page.keyboard.press("ArrowDown")
            page.keyboard.press("ArrowDown")
            chosen = box.locator(".memrecall-search-item.active").inner_text()
            assert chosen == items.nth(1).inner_text() and "the" in chosen.lower()
            old = _src(page)
            started = time.monotonic()
            page.keyboard.press("Enter")
            _wait_new_picture(page, old)
            timings["suggestion -> picture"] = time.monotonic() - started
            assert search.input_value() == chosen and cells.count() == n_cells

            # switch model with the arrow keys; notebook shortcuts on the dropdown do nothing
            model = box.locator(".widget-dropdown", has_text="model").locator("select").first
            model.focus()
            old = _src(page)
            started = time.monotonic()
            page.keyboard.press("ArrowDown")
            page.wait_for_function(  # the status line says it is loading, before the picture
                "() => document.querySelector('.memrecall-explorer .memrecall-status')"
                ".innerText.includes('loading')", timeout=60_000)
            _wait_new_picture(page, old, timeout_s=300)  # the first use loads it (GGUF, ~15 s)
            timings["model switch (loaded on demand)"] = time.monotonic() - started
            assert model.input_value() == SECOND_MODEL
            old = _src(page)
            started = time.monotonic()
            page.keyboard.press("ArrowUp")  # back to Gemma 3 and on again: both loaded now
            _wait_new_picture(page, old)
            old = _src(page)
            page.keyboard.press("ArrowDown")
            _wait_new_picture(page, old)
            timings["model switch, back and forth (loaded)"] = time.monotonic() - started
            for key in ["a", "b", "x", "d", "d", "ArrowUp", "ArrowDown"]:
                page.keyboard.press(key)
            _settled(page, SECOND_MODEL)
            assert cells.count() == n_cells
            assert model.evaluate("el => el === document.activeElement")

            # compare with Gemma 3: one picture, two models on one layer axis
            other = box.locator(".widget-dropdown", has_text="compare with").locator("select")
            other.focus()
            old = _src(page)
            started = time.monotonic()
            page.keyboard.press("ArrowDown")
            _wait_new_picture(page, old)
            assert other.input_value() == "gemma-3-270m"
            _settled(page, SECOND_MODEL, "gemma-3-270m", " | ")
            timings["compare"] = time.monotonic() - started
            page.wait_for_timeout(500)  # the last PNG decoded and laid out
            screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "compare.png")
            box.screenshot(path=str(screenshot))
            assert screenshot.stat().st_size > 0

            # export, by keyboard: focus the button, Enter
            button = box.locator("button", has_text="export")
            button.focus()
            page.keyboard.press("Enter")
            saved = box.locator(".widget-html-content", has_text="saved:")
            saved.wait_for(timeout=60_000)
            written = [Path(c) for c in saved.locator("code").all_inner_texts()]
            assert [p.suffix for p in written] == [".png", ".pdf", ".csv"]
            assert all(p.is_file() and p.stat().st_size > 0 for p in written)
            assert written[0].parent == tmp_path / "figures" and written[2].parent == \
                tmp_path / "results"
            assert cells.count() == n_cells
    finally:
        (ROOT / "notebooks" / name).unlink(missing_ok=True)
        # Lab's autosave keeps an executed copy (make lab's save hook); not the test's to keep
        (ROOT / "notebooks" / "rendered" / "interactive" / name).unlink(missing_ok=True)
    for what, seconds in timings.items():
        print(f"{what}: {seconds:.1f} s")
