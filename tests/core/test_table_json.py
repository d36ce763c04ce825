"""metrics.jsonl and run.json are strict JSON (no bare NaN/Infinity); non-finite values read back as NaN."""

import json
import math

import pytest

from optprobe.runinfo import read_run_info, update_run_info
from optprobe.sinks.table import LOG_NAME, TableSink, read_table


def _reject_constants(name: str) -> float:
    raise ValueError(f"not JSON: {name}")


def test_every_line_of_a_table_with_non_finite_values_is_strict_json(tmp_path):
    sink = TableSink(tmp_path)
    sink.write({"step": 0, "loss": 1.5, "inst_gap_prev": math.nan, "grad_norm": math.inf})
    sink.write({"step": 1, "loss": -math.inf, "inst_gap_prev": 0.25, "grad_norm": 2.0})
    sink.close()
    lines = (tmp_path / LOG_NAME).read_text().splitlines()
    rows = [json.loads(line, parse_constant=_reject_constants) for line in lines]
    assert rows[0]["inst_gap_prev"] is None and rows[0]["grad_norm"] is None and rows[1]["loss"] is None
    table = read_table(tmp_path)
    assert math.isnan(table["inst_gap_prev"][0]) and table["inst_gap_prev"][1] == 0.25
    assert math.isnan(table["grad_norm"][0]) and math.isnan(table["loss"][1])
    assert table["loss"].dtype.kind == "f"


def test_a_column_that_is_never_finite_reads_back_as_float_nan(tmp_path):
    sink = TableSink(tmp_path)
    sink.write({"step": 0, "pl_ratio": math.nan})
    sink.close()
    table = read_table(tmp_path)
    assert table["pl_ratio"].dtype.kind == "f" and table["pl_ratio"].isna().all()


def test_resume_truncation_keeps_the_lines_byte_for_byte(tmp_path):
    sink = TableSink(tmp_path)
    for step in range(3):
        sink.write({"step": step, "loss": 1.0 / (step + 1), "gap": math.nan if step == 1 else 0.1 * step})
    sink.close()
    before = (tmp_path / LOG_NAME).read_text().splitlines(keepends=True)
    TableSink(tmp_path, keep_rows=2).close()
    assert (tmp_path / LOG_NAME).read_text() == "".join(before[:2])


def test_run_json_is_strict_json(tmp_path):
    update_run_info(tmp_path, final={"loss": math.nan, "sharpness": math.inf, "ok": [1.0, -math.inf]})
    text = (tmp_path / "run.json").read_text()
    json.loads(text, parse_constant=_reject_constants)
    assert read_run_info(tmp_path)["final"] == {"loss": None, "sharpness": None, "ok": [1.0, None]}


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_old_tables_with_bare_constants_still_read(tmp_path, value):
    (tmp_path / LOG_NAME).write_text(json.dumps({"step": 0, "loss": value}) + "\n")
    got = read_table(tmp_path)["loss"][0]
    assert (math.isnan(value) and math.isnan(got)) or got == value
