"""The numbers and texts notebooks 01 and 02 show, on tiny hand-made frames."""

import pandas as pd
import pytest

from memrecall import analysis, report
from memrecall.data import IDIOMEM_FLAGS, idiomem_rebuild


def tiny_idioms():
    return pd.DataFrame({
        "idiom": ["a b c d", "a b c d e", "x y z w", "p q r s t u"],
        "id": [1, 2, 2, 3],
        "source": ["magpie", "magpie", "ef", "lidioms"],
        "prompt_comp_ind": [True, False, False, False],
        "similarity_ind": [False, False, True, False],
        "frequent_target_ind": [True, True, False, True],
        "hard_to_guess": [False, True, False, True],
    })


def test_idiomem_flags_are_the_four_bool_columns():
    assert list(IDIOMEM_FLAGS) == ["prompt_comp_ind", "similarity_ind", "frequent_target_ind",
                                   "hard_to_guess"]


def test_length_tables():
    idioms = tiny_idioms()
    table = analysis.length_by_source(idioms)
    assert list(table.index) == ["magpie", "ef", "lidioms", "all"]
    assert table.loc["magpie", "mean"] == 4.5
    assert table.loc["all"].tolist() == [4, 4.75, 4, 6]
    counts = analysis.length_counts(idioms, ["magpie", "ef", "lidioms"])
    assert list(counts.index) == [4, 5, 6]
    assert counts.loc[4].tolist() == [1, 1, 0]
    shares = analysis.length_shares({"a": pd.Series([2, 4]), "b": pd.Series([4, 4])})
    assert list(shares.index) == [2, 3, 4]
    assert shares["a"].tolist() == [50, 0, 50] and shares["b"].tolist() == [0, 0, 100]
    summary = analysis.length_summary({"b": pd.Series([1, 3]), "a": pd.Series([2])})
    assert summary["mean"].to_dict() == {"a": 2, "b": 2}


def test_flag_tables():
    idioms = tiny_idioms()
    assert analysis.hard_to_guess_holds(idioms) == 4
    broken = idioms.assign(hard_to_guess=True)
    assert analysis.hard_to_guess_holds(broken) == 2
    counts = analysis.flag_counts(idioms)
    assert counts.loc["frequent_target_ind", "true"] == 3
    assert counts.loc["similarity_ind", "true_pct"] == 25
    combos = analysis.flag_combinations(idioms)
    assert combos["idioms"].tolist()[0] == 2 and combos["idioms"].sum() == 4
    assert combos["pct"].sum() == 100
    shares = analysis.flag_shares_by_source(idioms, ["ef", "magpie"])
    assert list(shares.index) == ["ef", "magpie"]
    assert shares.loc["magpie", "hard_to_guess"] == 50


def test_release_differences():
    rebuilt = pd.DataFrame({"idiom": ["a b c d", "e f g h", "i j k l"],
                            "source": ["ep_by_itself", "LIdiom", "EPIC"]})
    released = pd.DataFrame({"idiom": ["a b c d", "e f g h", "m n o p", "q r s t"],
                             "source": ["ep_by_itself", "magpie", "LIdiom", "magpie"]})
    raw = pd.DataFrame({"raw": ["M n o p.", "e f g h"], "field": ["definition", "label"]})
    diff = idiomem_rebuild.release_differences(rebuilt, released, raw)
    assert diff["idiom"].tolist() == ["m n o p", "e f g h", "i j k l"]
    assert diff["in"].tolist() == ["released only", "rebuilt only", "rebuilt only"]
    assert diff["released as"].tolist() == ["LIdiom", "magpie", "—"]
    assert diff["in LIdioms file as"].tolist() == ["definition", "label", "—"]


class Tokenizer:
    def decode(self, ids):
        return "".join(f"<{i}>" for i in ids)

    def __call__(self, text, **kwargs):  # one token per character, with offsets
        return {"input_ids": [ord(c) for c in text],
                "offset_mapping": [(i, i + 1) for i in range(len(text))]}


def idiom_results():
    return pd.DataFrame({"text": ["a b", "c d"], "prompt": ["a", "c"], "target": ["b", "d"],
                         "target_token": [1, 2], "pred_token": [1, 3],
                         "is_memorized": [True, False], "hard_to_guess": [True, False]})


def test_memorization_frame_decodes_and_adds_the_continuation(monkeypatch):
    monkeypatch.setattr("memrecall.probes.target_token_counts", lambda res, tok: [1, 2])
    res = idiom_results()
    words = pd.DataFrame({"continuation": ["b", "x"], "whole_word": [True, False]})
    frame = analysis.memorization_frame(res, Tokenizer(), words)
    assert frame["target_piece"].tolist() == ["<1>", "<2>"]
    assert frame["pred_piece"].tolist() == ["<1>", "<3>"]
    assert frame["n_target_tokens"].tolist() == [1, 2]
    assert frame["whole_word"].tolist() == [True, False]
    assert "target_piece" not in res  # a copy
    masked = analysis.memorization_frame(res, Tokenizer(), None)
    assert masked["continuation"].isna().all() and masked["whole_word"].isna().all()


def test_memorization_csv_schema():
    res = pd.DataFrame({c: [0] for c in report.MEMORIZATION_CSV_COLUMNS if c != "idiom"}
                       | {"text": ["a b"], "layer_ranks": [[1, 2]]})
    table = report.memorization_csv(res)
    assert tuple(table.columns) == report.MEMORIZATION_CSV_COLUMNS
    assert table["idiom"].tolist() == ["a b"]


def test_overview_agreement_and_conclusions():
    a = idiom_results()
    b = a.assign(is_memorized=[True, True])
    results = {"m1": a, "m2": b}
    overview = analysis.memorization_overview(results)
    assert overview.loc["m1", "memorized"] == 1 and overview.loc["m2", "memorized %"] == 100
    assert overview.loc["m1", "memorized % (hard_to_guess)"] == 100
    matrix = analysis.memorization_matrix(results)
    by_n = analysis.memorized_by_n_models(matrix)
    assert by_n["idioms"].tolist() == [0, 1, 1] and by_n["%"].tolist() == [0, 50, 50]
    by_source = pd.concat([analysis.memorization_by(r.assign(source="ef"), "source")
                           .assign(model=n) for n, r in results.items()])
    by_flag = pd.concat([analysis.memorization_by(r, ["hard_to_guess"]).assign(model=n)
                         for n, r in results.items()])
    text = report.memorization_conclusions(overview, by_source, by_flag,
                                           pd.DataFrame(columns=["multi-token targets"]),
                                           analysis.pairwise_agreement(matrix), by_n)
    assert "memorizes 1 of 2 idioms (50.0%)" in text
    assert "`hard_to_guess` 100.0% / 0.0%" in text
    assert "1 are memorized by all 2 models and 0 by none" in text
    assert "both 1, only m1 0, only m2 1" in text


def test_dataset_conclusions_state_the_numbers():
    idioms = tiny_idioms()
    provenance = pd.DataFrame({"verified": [True, True]})
    multi = pd.DataFrame([{"model": "m", "tokenizer": "T", "vocab": 10,
                           "idioms: multi-token %": 25.0, "idioms: max pieces": 3,
                           "wikipedia: multi-token %": 10.0,
                           "facts (last word): multi-token %": 5.0}]).set_index("model")
    overlap = pd.DataFrame({"source": ["ef", "total"], "released": [4, 4], "both": [3, 3],
                            "only_rebuilt": [1, 1], "recall": [0.75, 0.75]})
    differences = pd.DataFrame({"idiom": ["x"], "in": ["released only"],
                                "in LIdioms file as": ["definition"]})
    text = report.dataset_conclusions(provenance, idioms, multi, overlap, differences,
                                      pd.DataFrame({"text": ["a b c", "d e f g h"]}),
                                      pd.DataFrame({"text": ["a b"]}))
    assert "2 of 2 data files" in text
    assert "4 idioms (4 distinct strings, 3 distinct ids; 2 records share an id" in text
    assert "holds on 4 of 4 rows" in text
    assert "25.0% of idiom targets" in text and "at most 3" in text
    assert "ef 3 of 4; in all 3 of 4 (75.0%)" in text
    assert "1 released-only strings occur in the LIdioms file as a definition" in text
    assert "2 Wikipedia texts of 3–5 words (mean 4.0, idioms 4.8)" in text


@pytest.mark.parametrize("flags", [IDIOMEM_FLAGS, list(IDIOMEM_FLAGS)])
def test_memorization_by_takes_the_flags(flags):
    table = analysis.memorization_by(tiny_idioms().assign(is_memorized=True), flags)
    assert set(table["column"]) == set(IDIOMEM_FLAGS)


def test_memorization_conclusions_for_any_number_of_models():
    base = pd.DataFrame({"text": ["a b", "c d", "e f", "g h"], "hard_to_guess": True,
                         "source": "ef"})
    memorized = {"m1": [True, True, False, False], "m2": [True, False, True, False],
                 "m3": [True, False, False, False]}
    results = {name: base.assign(is_memorized=flags) for name, flags in memorized.items()}

    def conclude(names, whole_word=None):
        whole_word = pd.DataFrame(columns=["multi-token targets"]) if whole_word is None \
            else whole_word
        chosen = {n: results[n] for n in names}
        overview = analysis.memorization_overview(chosen)
        by_source = pd.concat([analysis.memorization_by(r, "source").assign(model=n)
                               for n, r in chosen.items()])
        by_flag = pd.concat([analysis.memorization_by(r, ["hard_to_guess"]).assign(model=n)
                             for n, r in chosen.items()])
        if len(chosen) < 2:
            return report.memorization_conclusions(overview, by_source, by_flag, whole_word)
        matrix = analysis.memorization_matrix(chosen)
        return report.memorization_conclusions(
            overview, by_source, by_flag, whole_word, analysis.pairwise_agreement(matrix),
            analysis.memorized_by_n_models(matrix))

    three = conclude(["m1", "m2", "m3"])
    assert "of 4 idioms, 1 are memorized by all 3 models and 1 by none" in three
    assert "m1 and m2: both 1, only m1 1, only m2 1, neither 1" in three
    assert "m2 and m3: both 1, only m2 1, only m3 0, neither 2" in three
    assert [line.split("**")[1] for line in three.splitlines() if line.startswith("* ")] \
        == ["m1", "m2", "m3", "Agreement"]
    whole = pd.DataFrame({"multi-token targets": [2], "share of idioms %": [50.0],
                          "whole | first %": [100.0],
                          "memorized % (whole-word criterion)": [25.0]}, index=["m1"])
    one = conclude(["m1"], whole)
    assert "memorizes 2 of 4 idioms (50.0%)" in one and "Agreement" not in one
    assert "Whole words: 2 targets span several sub-tokens (50.0% of idioms)" in one
    assert "the first piece right, greedy decoding gives the whole word in 100.0%" in one
    assert "whole-word criterion: 25.0% (first-piece criterion 50.0%)" in one
    missed = conclude(["m1"], whole.assign(**{"whole | first %": float("nan")}))
    assert "(50.0% of idioms); none has the first piece right; memorized" in missed
