"""Rendered notebooks are stored tidy: no progress bars, each figure once, small PNGs."""

import base64
import io
import json

import nbformat
import numpy as np
import pytest
from matplotlib.figure import Figure
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from PIL import Image

from memrecall.figures import PNG_DPI
from memrecall.rendered import palette_png, tidy_files, tidy_rendered
from memrecall.reproduce import NOTEBOOKS, run_notebook

RENDERED = sorted(p for p in (NOTEBOOKS / "rendered").glob("*/*.ipynb")
                  if p.parent.name != "interactive")  # make lab's executed copies: git-ignored
WARNING = "/x/lens.py:12: UserWarning: 3 prompts are longer than the context\n  warn(msg)\n"


def bar(desc: str, n: int, total: int) -> str:
    """What plain tqdm writes for one update (as ``memrecall.runmode.progress_bar`` shows it)."""
    percent = 100 * n // total
    rate = "?prompt/s" if n == 0 else f"{n / 3:.2f}prompt/s"
    remaining = "?" if n == 0 else "00:07"
    return f"\r{desc}: {percent:3d}%|#         | {n}/{total} [00:03<{remaining}, {rate}]"


def stderr(text: str):
    return new_output("stream", name="stderr", text=text)


def stdout(text: str):
    return new_output("stream", name="stdout", text=text)


def figure_png(colour: str = "C0") -> str:
    """A small matplotlib figure as notebooks show it: base64 PNG, anti-aliased (> 256 colours)."""
    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.plot(np.sin(np.linspace(0, 6, 50)), color=colour)
    ax.set_title("layer 1..18")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def image(encoded: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(encoded)))


def shown(png: str, plain: str = "SavedFigure(figure=<Figure size 360x240 with 1 Axes>)"):
    return new_output("display_data", data={"image/png": png, "text/plain": plain})


def tidy_cell(*outputs) -> list:
    """The outputs of one code cell after :func:`tidy_rendered`."""
    notebook = new_notebook(cells=[new_code_cell("run()", outputs=list(outputs))])
    return tidy_rendered(notebook).cells[0].outputs


def test_progress_bar_updates_go_and_a_warning_between_them_stays():
    updates = [bar("project gemma-3-270m", n, 852) for n in (0, 9, 852, 852)]
    outputs = tidy_cell(stderr(updates[0]), stderr(updates[1]), stderr(WARNING),
                        stderr(updates[2]), stderr(updates[3] + "  "), stderr("\n"))
    assert [(o.name, o.text) for o in outputs] == [("stderr", WARNING)]


def test_a_warning_written_on_a_bar_s_line_is_kept_whole():
    outputs = tidy_cell(stderr(bar("knockouts", 306, 45900) + WARNING + bar("knockouts", 0, 9)))
    assert outputs[0].text == WARNING


def widget(plain: str, model_id: str = "b932"):
    return new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": model_id, "version_major": 2,
                                                     "version_minor": 0},
        "text/plain": plain})


def test_progress_widgets_go_with_their_state_and_other_widgets_stay():
    gguf = "Converting and de-quantizing GGUF tensors...:   0%|          | 0/236 [00:00<?, ?it/s]"
    slider = widget("IntSlider(value=3)", "c0ff")
    notebook = new_notebook(cells=[
        new_code_cell("load()", outputs=[widget(gguf), stdout("loaded\n"), widget(gguf + " ")]),
        new_code_cell("explore()", outputs=[slider])])
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    tidied = tidy_rendered(notebook)
    assert [o.get("text") for o in tidied.cells[0].outputs] == ["loaded\n"]
    assert tidied.cells[1].outputs == [slider]
    assert "widgets" in tidied.metadata  # the slider still needs it
    only_bars = new_notebook(cells=[new_code_cell("load()", outputs=[widget(gguf)])])
    only_bars.metadata["widgets"] = {"state": {}}
    tidied = tidy_rendered(only_bars)
    assert tidied.cells[0].outputs == [] and "widgets" not in tidied.metadata


def test_tidying_files_says_which_changed_and_is_idempotent(tmp_path):
    bars = new_notebook(cells=[new_code_cell("run()", outputs=[stderr(bar("fit", 1, 9))])])
    clean = new_notebook(cells=[new_code_cell("run()", outputs=[stdout("done\n")])])
    paths = [tmp_path / "bars.ipynb", tmp_path / "clean.ipynb"]
    for notebook, path in zip([bars, clean], paths, strict=True):
        nbformat.write(tidy_rendered(clean) if path.name == "clean.ipynb" else notebook, path)
    assert tidy_files(paths) == [paths[0]]
    assert nbformat.read(paths[0], as_version=4).cells[0].outputs == []
    assert tidy_files(paths) == []


def test_bars_without_a_total_or_past_an_hour_go_too():
    outputs = tidy_cell(stderr("\r12it [00:03, 3.99it/s]"),
                        stderr("\rfit: 50%|#####     | 5/10 [1:02:03<1:02:03, 742.50s/it]\n"))
    assert outputs == []


@pytest.mark.parametrize("text", [
    "progress: 50% of layers [done]\n",           # no tqdm timing bracket
    "\rsaving [00:03]\n",                          # a clock, but no rate after it
    "Traceback (most recent call last):\n  ValueError: bad [00:01<00:02, 3it/s]\n",  # no \r
])
def test_stderr_that_is_not_a_tqdm_update_is_kept_verbatim(text):
    assert [o.text for o in tidy_cell(stderr(text))] == [text]


def test_stdout_is_kept_and_streams_meet_again_once_the_bars_are_gone():
    outputs = tidy_cell(stdout("gemma-3-270m: 852 prompts\n"), stderr(bar("project", 9, 852)),
                        stdout("\rsmollm2 [00:01<00:02, 3it/s] is stdout\n"),
                        stderr("\n"), stdout("done\n"))
    assert [(o.name, o.text) for o in outputs] == [
        ("stdout", "gemma-3-270m: 852 prompts\n\rsmollm2 [00:01<00:02, 3it/s] is stdout\ndone\n")]


def test_a_figure_shown_twice_in_a_cell_is_stored_once_and_without_its_text_repr():
    png, other = figure_png(), figure_png("C1")
    table = new_output("display_data", data={"text/html": "<table/>", "text/plain": "   a\n0  1"})
    outputs = tidy_cell(shown(png), table, shown(png, "<Figure size 360x240 with 1 Axes>"),
                        shown(other))
    assert [sorted(o.data) for o in outputs] == [["image/png"], ["text/html", "text/plain"],
                                                 ["image/png"]]
    assert outputs[0].data["image/png"] != outputs[2].data["image/png"]


def test_the_same_figure_in_two_cells_stays_in_both():
    png = figure_png()
    notebook = new_notebook(cells=[new_code_cell("a", outputs=[shown(png)]),
                                   new_markdown_cell("between"),
                                   new_code_cell("b", outputs=[shown(png)])])
    assert [len(c.outputs) for c in tidy_rendered(notebook).cells[::2]] == [1, 1]


def test_a_figure_is_stored_as_a_smaller_palette_png_that_looks_the_same():
    png = figure_png()
    stored = tidy_cell(shown(png))[0].data["image/png"]
    before, after = image(png), image(stored)
    assert before.mode == "RGBA" and after.mode == "P" and after.size == before.size
    assert len(base64.b64decode(stored)) < 0.6 * len(base64.b64decode(png))
    change = np.abs(np.asarray(after.convert("RGB"), dtype=int)
                    - np.asarray(before.convert("RGB"), dtype=int))
    assert change.mean() < 1 and (change.sum(axis=-1) > 0).mean() < 0.1


def test_few_colours_survive_exactly_and_encoding_is_deterministic():
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[:, 20:40] = (0, 114, 178)
    pixels[10:30, 40:] = (213, 94, 0)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    stored = palette_png(encoded)
    assert np.array_equal(np.asarray(image(stored).convert("RGB")), pixels)
    assert palette_png(encoded) == stored and palette_png(stored) == stored


def test_a_transparent_png_is_left_as_it_is():
    transparent = Image.new("RGBA", (8, 8), (255, 255, 255, 0))
    transparent.putpixel((2, 2), (0, 0, 0, 255))
    buffer = io.BytesIO()
    transparent.save(buffer, "PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    assert palette_png(encoded) == encoded


def test_tidying_twice_changes_nothing():
    notebook = new_notebook(cells=[new_code_cell("run()", outputs=[
        stderr(bar("project", 0, 5) + WARNING), stdout("a\n"), shown(figure_png())])])
    once = nbformat.writes(tidy_rendered(notebook))
    assert nbformat.writes(tidy_rendered(nbformat.reads(once, as_version=4))) == once


def test_run_notebook_stores_the_rendered_copy_tidy(tmp_path):
    source = tmp_path / "97_bars.ipynb"
    code = ("import warnings\nfrom tqdm import tqdm  # progress_bar's plain bar\n"
            "with tqdm(total=3, desc='project') as bar:\n"
            "    for _ in range(3):\n        bar.update(1)\n"
            "warnings.warn('kept')\nprint('done')")
    notebook = new_notebook(cells=[new_code_cell("profile = 'smoke'",
                                                 metadata={"tags": ["parameters"]}),
                                   new_code_cell(code)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, source)
    output = tmp_path / "rendered" / source.name
    run_notebook(source, output, {"profile": "smoke"})
    streams = nbformat.read(output, as_version=4).cells[-1].outputs
    texts = {o.name: o.text for o in streams}  # the kernel flushes the two in either order
    assert len(streams) == 2 and texts["stdout"] == "done\n"
    assert "UserWarning: kept" in texts["stderr"] and "project" not in texts["stderr"]


@pytest.mark.skipif(not RENDERED, reason="no rendered notebooks in this checkout")
def test_the_committed_renders_are_tidy_and_small():
    # Budgets: each notebook under 2 MB (notebook 03, the largest, holds ~20 palette PNGs), all
    # of them under 5 MB (six notebooks with the claims' tables and figures; was 4 MB for fewer)
    total = 0
    for path in RENDERED:
        text = path.read_text(encoding="utf-8")
        size = len(text.encode())
        total += size
        assert size < 2_000_000, f"{path.name} weighs {size:,} bytes"
        tidied = tidy_rendered(nbformat.reads(text, as_version=nbformat.NO_CONVERT))
        assert json.loads(nbformat.writes(tidied)) == json.loads(text), f"{path} is not tidy"
    assert total < 5_000_000, f"rendered notebooks weigh {total:,} bytes"
