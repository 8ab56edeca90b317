"""`make readme`: README's result blocks are what the committed CSVs give, and nothing else moves.

The first test is the guard: README.md's generated blocks must equal what `results/offline/`
produces (run `make readme` after a new `make reproduce PROFILE=offline`). The others build small
frames whose blocks are known, and READMEs with broken markers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from types import SimpleNamespace

import pandas as pd
import pytest

from memrecall import report
from memrecall._io import repo_root
from memrecall.report import readme

ROOT = repo_root()

CLAIM_COLUMNS = ["claim", "model", "population", "lens", "statistic", "value", "ci_low",
                 "ci_high", "p_value", "n", "verdict"]


def test_committed_readme_matches_committed_results():
    stale = readme.stale_blocks(ROOT / "README.md", ROOT / "results" / "offline")
    assert stale == [], f"README.md blocks {stale} are out of date: run `make readme`"


def test_committed_readme_says_which_csvs_are_missing():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("claims.csv", "summary.csv", "paper_comparison.csv", "lens_kl.csv"):
        missing = f"_not generated yet: results/offline/{name} is missing_"
        assert (missing in text) != (ROOT / "results" / "offline" / name).is_file()


# --------------------------------------------------------------------------- blocks


def summary_frame() -> pd.DataFrame:
    return pd.DataFrame([{
        "model": "m", "n_layers": 12, "n_idioms": 1200, "n_memorized": 300, "memorized_pct": 25.0,
        "median_promotion_layer_1based_memorized": 9.0,
        "median_promotion_layer_1based_non_memorized": 11.5,
        "median_promotion_layer_1based_wikipedia": 12.0, "n_wikipedia": 1000,
        "mean_confidence_boost_memorized": 0.1234,
        "mean_confidence_boost_non_memorized": -0.0456,
        "mean_confidence_boost_wikipedia": 0.0}])


def test_summary_block_rows():
    lines = report.summary_block(summary_frame()).splitlines()
    assert lines[0].startswith("| model | layers | memorized idioms | Wikipedia texts | "
                               "median promotion layer: memorized / non-memorized / Wikipedia")
    assert lines[1] == "| --- | --- | --- | --- | --- | --- |"
    assert lines[2] == ("| m | 12 | 300 / 1,200 (25.0%) | 1,000 | 9 / 11.5 / 12 | "
                        "+0.123 / −0.046 / 0.000 |")


def claims_frame(extra: list[tuple] = ()) -> pd.DataFrame:
    rows = [("promotion", "a", "filtered", "logit", "cliffs_delta", -0.444, -0.52, -0.36, 1e-9,
             400, "supported"),
            ("promotion", "b", "filtered", "logit", "cliffs_delta", 0.2, 0.1, 0.3, 0.01, 100,
             "contradicted"),
            ("promotion", "c", "filtered", "logit", "cliffs_delta", 0.25, 0.05, 0.41, 0.02, 90,
             "contradicted"),
            ("memorized", "a", "filtered", "logit", "memorized %", 49.18, 45.0, 52.55, None, 852,
             "supported"),
            ("memorized", "b", "filtered", "logit", "memorized %", None, None, None, None, 0,
             "inconclusive"),
            ("memorized", "c", "filtered", "logit", "memorized %", 12.0, None, None, None, 852,
             "contradicted"),
            *extra]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


FLIPS = [("promotion", "b", "filtered", "shortcut", "cliffs_delta", -0.3, -0.4, -0.2, 1e-3, 100,
          "supported"),
         ("promotion", "a", "all", "logit", "cliffs_delta", -0.4, -0.5, -0.3, 1e-9, 852,
          "supported"),
         ("promotion", "c", "all", "tuned", "cliffs_delta", 0.0, -0.1, 0.1, 0.9, 852,
          "inconclusive")]


def test_claims_block_baseline_only_with_intervals():
    block = report.claims_block(claims_frame(FLIPS))
    lines = block.splitlines()
    assert lines[0] == "| claim | statistic | a | b | c |"
    assert lines[2] == ("| promotion | cliffs_delta | supported −0.44 [−0.52, −0.36] | "
                        "contradicted 0.20 [0.10, 0.30] | contradicted 0.25 [0.05, 0.41] |")
    # % with 1 decimal; a missing value leaves the verdict alone, a missing interval the value
    assert lines[3] == ("| memorized | memorized % | supported 49.2 [45.0, 52.5] | inconclusive "
                        "| contradicted 12.0 |")
    assert "shortcut" not in block and "−0.30" not in block  # other lenses and populations left out


def test_claims_block_keeps_only_the_statistic_text_the_models_share():
    rows = [("edges", model, "filtered", "logit", f"relative change (%); {w}-layer windows; x",
             -20.0, -30.0, -10.0, 1e-3, 50, "supported") for model, w in (("a", 4), ("b", 6))]
    [line] = [line for line in report.claims_block(claims_frame(rows)).splitlines()
              if line.startswith("| edges |")]
    assert line.startswith("| edges | relative change (%); x; "
                           "each model's details in claims.csv | ")
    assert "4-layer" not in line and "6-layer" not in line


def test_claim_verdicts_say_where_each_claim_holds_and_what_flips():
    paper = {"promotion": SimpleNamespace(id="promotion", sentence="Memorized tokens are "
                                          "promoted early.", expected_sign=-1)}
    bullets = report.claim_verdicts_block(claims_frame(FLIPS), paper).splitlines()
    assert bullets[0] == ("- **promotion**: supported in a, contradicted in b and c (filtered "
                          "idioms, logit lens). The paper: “Memorized tokens are promoted early.”")
    assert bullets[1] == ("- **memorized**: supported in a, contradicted in c, inconclusive in b "
                          "(filtered idioms, logit lens).")
    assert bullets[2] == ("- Verdicts that flip under a fitted lens or with all idioms: promotion "
                          "in b (contradicted → supported under the shortcut lens); promotion in c "
                          "(contradicted → inconclusive with all idioms under the tuned lens).")
    assert len(bullets) == 3  # promotion in a stays supported with all idioms: not a flip


def test_claim_verdicts_without_flips_or_other_readings():
    same = [("promotion", "a", "filtered", "tuned", "cliffs_delta", -0.2, -0.3, -0.1, 0.01, 400,
             "supported")]
    assert report.claim_verdicts_block(claims_frame(same)).splitlines()[-1] == (
        "- No verdict flips under a fitted lens or with all idioms.")
    assert len(report.claim_verdicts_block(claims_frame()).splitlines()) == 2


OLD_COMPARISON = pd.DataFrame({
    "analysis": ["figure5", "table3", "table3", "table3", "table4"],
    "quantity": ["clusters ending above probability 0.5 (of 7)", "memorized % (all)",
                 "memorized % (all)", "memorized % (hard)", "Pearson r"],
    "model": ["a", "a", "b", "a", "b"],
    "ours": [2.0, 49.18, 16.08, 42.4, -0.2495],
    "paper_model": ["gpt2-medium"] * 5,
    "paper_value": [7.0, 44.7, 44.7, 44.7, -0.22],
    "verdict": ["differs: 2 of our 7", "agrees (within 5.0)", "differs: lower by 28.6",
                "agrees (within 5.0)", "differs: the other sign"]})


def test_paper_comparison_counts_per_analysis_and_model():
    lines = report.paper_comparison_block(OLD_COMPARISON).splitlines()
    assert lines[0] == "| analysis | a | b |"
    # the paper's order of analyses (table3 before figure5), whatever the file's order
    assert lines[2] == ("| table3 | 2 agree, 0 differ, 0 uninformative | 0 agree, 1 differ, "
                        "0 uninformative |")
    assert lines[3] == ("| table4 | 0 agree, 0 differ, 0 uninformative | 0 agree, 1 differ, "
                        "0 uninformative |")
    assert lines[4].startswith("| figure5 | 0 agree, 1 differ, 0 uninformative |")


def test_paper_differs_rows_old_columns():
    lines = report.paper_differs_block(OLD_COMPARISON).splitlines()
    assert lines[0] == "| analysis | quantity | model | ours | paper |"
    assert lines[2:] == [
        "| figure5 | clusters ending above probability 0.5 (of 7) | a | 2 | 7 (gpt2-medium) |",
        "| table3 | memorized % (all) | b | 16.1 | 44.7 (gpt2-medium) |",
        "| table4 | Pearson r | b | −0.25 | −0.22 (gpt2-medium) |"]


def test_paper_comparison_new_columns_intervals_and_uninformative():
    new = OLD_COMPARISON.assign(population=["filtered", "all", "all", "filtered", "all"],
                                ci_low=[1.0, 45.0, 13.61, 40.0, None],
                                ci_high=[3.0, 52.0, 18.55, 45.0, None])
    new.loc[0, "verdict"] = "uninformative: interval spans the paper's value"
    counts = report.paper_comparison_block(new)
    assert "| figure5 | 0 agree, 0 differ, 1 uninformative |" in counts
    lines = report.paper_differs_block(new).splitlines()
    assert lines[0] == "| analysis | quantity | population | model | ours | paper |"
    assert lines[2:] == ["| table3 | memorized % (all) | all | b | 16.1 [13.6, 18.6] | "
                         "44.7 (gpt2-medium) |",
                         "| table4 | Pearson r | all | b | −0.25 | −0.22 (gpt2-medium) |"]


def test_lens_kl_block_depths_and_mean_before_the_output():
    kl = pd.DataFrame({"lens": ["logit lens"] * 4 + ["tuned lens"] * 4,
                       "layer": [0, 1, 2, 3] * 2,
                       "kl_bits": [8.0, 4.0, 2.0, 0.001, 1.0, 1.0, 0.5, 0.001],
                       "model": "m"})
    lines = report.lens_kl_block(kl).splitlines()
    assert lines[0] == ("| model | lens | KL at 25% depth | KL at 50% depth | KL at 75% depth | "
                        "mean KL over all layers but the last |")
    # 4 layers: 25% -> layer 1, 50% -> 2, 75% -> 3 (1-based); the mean of layers 1-3
    assert lines[2] == ("| m | logit lens | 8.00 (layer 1 of 4) | 4.00 (layer 2 of 4) | "
                        "2.00 (layer 3 of 4) | 4.67 |")
    assert lines[3].endswith("| 0.50 (layer 3 of 4) | 0.83 |")
    assert [report.depth_layer(d, 18) for d in (0.01, 0.25, 0.5, 0.75)] == [1, 4, 9, 14]


def test_lens_verdicts_from_lens_choice_and_from_claims():
    choice = pd.DataFrame({"model": ["m", "m"], "lens": ["logit lens", "linear shortcut"],
                           "two_step": ["supported", "partly supported"],
                           "promotion_delta": [-0.4366, -0.08], "boost_delta": [0.2689, 0.0],
                           "strength": [0.35, 0.04], "change": ["baseline", "weakens"]})
    lines = report.lens_verdicts_block(choice).splitlines()
    assert lines[2] == "| m | logit lens | supported | −0.44 | +0.27 | baseline |"
    assert lines[3] == "| m | linear shortcut | partly supported | −0.08 | 0.00 | weakens |"
    lines = report.lens_verdicts_block(claims_frame(FLIPS)).splitlines()
    assert lines[0] == "| claim | model | logit lens | shortcut lens |"  # population "all" left out
    assert lines[3] == ("| promotion | b | contradicted 0.20 [0.10, 0.30] | "
                        "supported −0.30 [−0.40, −0.20] |")
    assert lines[2].endswith("| supported −0.44 [−0.52, −0.36] | – |")


def test_timings_block_rows_and_total():
    timings = pd.DataFrame({"notebook": ["01_dataset", "05_interventions", "06_lens_choice"],
                            "seconds": [33.4, 754.6, 3600.0],
                            "code_fingerprint": ["aaa", "aaa", "bbb"]})
    lines = report.timings_block(timings).splitlines()
    assert lines[0] == "| notebook | wall time | code fingerprint |"
    assert lines[2] == "| 01_dataset | 33 s | `aaa` |"  # seconds not repeated
    assert lines[3] == "| 05_interventions | 12 min 35 s (755 s) | `aaa` |"
    assert lines[4] == "| 06_lens_choice | 1 h 0 min (3,600 s) | `bbb` |"
    assert lines[5] == "| all 3 | **1 h 13 min (4,388 s)** |  |"


def test_render_blocks_footnotes_and_missing_files(tmp_path):
    blocks = readme.render_blocks(tmp_path, shown_as="results/x", paper={})
    assert set(blocks) == set(readme.README_BLOCKS)
    assert blocks["claims"] == "_not generated yet: results/x/claims.csv is missing_"
    assert blocks["lens-verdicts"] == "_not generated yet: results/x/lens_choice.csv is missing_"
    summary_frame().to_csv(tmp_path / "summary.csv", index=False)
    footnote = readme.render_blocks(tmp_path, "results/x", {})["summary"].splitlines()[-1]
    assert footnote == ("*Generated by `make readme` from `results/x/summary.csv` (code "
                        "fingerprint `not recorded`).*")
    (tmp_path / "fingerprint.json").write_text(json.dumps({"code_fingerprint": "run"}))
    (tmp_path / "provenance.json").write_text(json.dumps(
        {"summary.csv": {"code_fingerprint": "file"}}))
    claims_frame(FLIPS).to_csv(tmp_path / "claims.csv", index=False)
    blocks = readme.render_blocks(tmp_path, "results/x", {})
    assert blocks["summary"].endswith("(code fingerprint `file`).*")  # provenance.json first
    assert blocks["claims"].endswith("from `results/x/claims.csv` (code fingerprint `run`).*")
    assert "results/x/claims.csv" in blocks["lens-verdicts"]  # the fitted lenses' claims rows


# --------------------------------------------------------------------------- markers


BLOCKS = {"one": "| a |\n| --- |", "two": "- x"}
TEXT = ("# Title\n\nbefore <!-- generated:one -->\nold\n<!-- /generated:one --> after\n\n"
        "<!-- generated:two --><!-- /generated:two -->\nend  \n")


def test_replace_blocks_keeps_the_outside_and_is_idempotent():
    new = report.replace_blocks(TEXT, BLOCKS)
    assert new == ("# Title\n\nbefore <!-- generated:one -->\n| a |\n| --- |\n"
                   "<!-- /generated:one --> after\n\n<!-- generated:two -->\n- x\n"
                   "<!-- /generated:two -->\nend  \n")
    assert report.replace_blocks(new, BLOCKS) == new


@pytest.mark.parametrize(("text", "block", "words"), [
    (TEXT.replace("<!-- generated:two --><!-- /generated:two -->", ""), "two",
     "has no generated block 'two'"),
    (TEXT + "<!-- generated:one -->\n<!-- /generated:one -->\n", "one",
     "appears twice (lines 3 and 9)"),
    (TEXT.replace("<!-- /generated:one -->", ""), "one", "is not closed before 'two' opens"),
    (TEXT.replace("<!-- generated:two -->", ""), "two", "has no opening marker"),
    (TEXT.replace("<!-- /generated:two -->", ""), "two", "has no closing marker"),
    (TEXT + "<!-- generated:three --><!-- /generated:three -->", "three",
     "unknown generated block 'three'"),
])
def test_broken_markers_name_the_block(text, block, words):
    with pytest.raises(report.MarkerError, match=re.escape(words)) as error:
        report.replace_blocks(text, BLOCKS, source="R.md")
    assert error.value.block == block and str(error.value).startswith("R.md")


def _readme_with_all_blocks(path):
    path.write_text("intro\n" + "".join(f"<!-- generated:{name} -->\n<!-- /generated:{name} -->\n"
                                         for name in readme.README_BLOCKS) + "outro\n")
    return path


def test_cli_check_write_and_marker_errors(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    summary_frame().to_csv(results / "summary.csv", index=False)
    file = _readme_with_all_blocks(tmp_path / "README.md")
    args = ["--readme", str(file), "--results", str(results)]
    assert readme.main([*args, "--check"]) == 1
    assert "blocks summary, claims" in capsys.readouterr().err
    assert readme.main(args) == 0
    written = file.read_text()
    assert written.startswith("intro\n<!-- generated:summary -->\n| model |")
    assert written.endswith("<!-- /generated:timings -->\noutro\n")
    assert readme.main([*args, "--check"]) == 0
    assert readme.write_readme(file, results) == [] and file.read_text() == written
    file.write_text(written.replace("<!-- /generated:lens-kl -->", ""))
    assert readme.main([*args, "--check"]) == 2
    assert "generated block 'lens-kl'" in capsys.readouterr().err


def test_make_readme_defaults_to_offline_and_passes_profile_as_text(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    (fake / "python").chmod(0o755)
    stamp = tmp_path / "no-stamp"  # -o: never (re)build the environment here
    env = {k: v for k, v in os.environ.items() if k != "PROFILE"}

    def args(*extra: str) -> list[str]:
        out = subprocess.run(["make", "-s", "-C", str(ROOT), f"STAMP={stamp}", "-o", str(stamp),
                              "-o", "git-filter", "readme", f"BIN={fake}", *extra],
                             capture_output=True, text=True, timeout=60, env=env, check=True)
        return out.stdout.splitlines()

    assert args() == ["-m", "memrecall.report.readme", "--profile", "offline"]
    assert args("PROFILE=smoke")[-1] == "smoke"
    injected = tmp_path / "injected"
    assert args(f"PROFILE=$(shell touch {injected})")[-1] == f"$(shell touch {injected})"
    assert not injected.exists()


def test_lens_kl_block_gives_the_convergence_rule_when_it_can_be_applied():
    """With standard errors and all three lenses, the last column is the rule's decision."""
    rows = []
    for lens, bits in (("logit lens", [8.0, 4.0, 0.0]), ("linear shortcut", [2.0, 1.0, 0.0]),
                       ("tuned lens", [1.5, 1.5, 0.0])):  # tuned: worse than the shortcut at 2
        rows += [{"model": "m", "lens": lens, "layer": layer, "kl_bits": kl, "se_bits": 0.01}
                 for layer, kl in enumerate(bits)]
    lines = report.lens_kl_block(pd.DataFrame(rows)).splitlines()
    assert lines[0].endswith("| mean KL over all layers but the last | convergence rule |")
    assert lines[2].endswith("| — |") and lines[3].endswith("| admitted |")
    assert lines[4].endswith("| left out: layers 2 (linear shortcut) |")
