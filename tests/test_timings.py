"""timings.csv: one row per notebook, replaced on a rerun, with the code that ran."""

import pandas as pd

from memrecall import report
from memrecall._io import code_fingerprint


def test_record_timing_keeps_one_row_per_notebook(tmp_path):
    path = tmp_path / report.TIMINGS_FILE
    report.record_timing(path, "03_layerwise_projection", 12.34)
    report.record_timing(path, "01_dataset", 2.0)
    table = report.record_timing(path, "03_layerwise_projection", 20.0)
    read = pd.read_csv(path)
    assert list(read.columns) == report.TIMING_COLUMNS
    assert read["notebook"].tolist() == ["01_dataset", "03_layerwise_projection"]
    assert read["seconds"].tolist() == [2.0, 20.0]  # the rerun replaced the first row
    assert (read["code_fingerprint"] == code_fingerprint()).all()
    assert table.equals(read)


def test_a_foreign_timings_file_is_started_again(tmp_path):
    path = tmp_path / report.TIMINGS_FILE
    path.write_text("notebook,minutes\n01_dataset,3\n")
    table = report.record_timing(path, "02_memorization_split", 1.0)
    assert table["notebook"].tolist() == ["02_memorization_split"]
