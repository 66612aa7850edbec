"""Hostile CSV inputs: every one gives the reader's TaskError naming the problem.

Covers the engine reader (TabularTaskSource / read_csv, paths, bytes and file objects) and
the app's upload path (ui.sources.read_csv_upload), plus property tests: arbitrary bytes,
text and small random tables either build a valid task source or raise TaskError.
Every hostile file is generated here; nothing is written outside tmp_path.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.tasks import TabularTaskSource, TaskError, make_task_source
from engine.tasks import tabular as tab
from engine.tasks.tabular import MAX_CLASSES, MAX_COLUMNS, MAX_ROWS, read_csv
from ui.sources import read_csv_upload


def _rows(n_tasks: int = 3, rows: int = 12, target=lambda i: i % 2) -> str:
    return "".join(f"t{i % n_tasks},{i * 0.5},{-i},{target(i)}\n" for i in range(n_tasks * rows))


GOOD = "task,a,b,y\n" + _rows()


def _src(data, target: str = "y", task: str = "task", **kw) -> TabularTaskSource:
    return TabularTaskSource(data, target, task, **kw)


def test_the_good_csv_builds() -> None:  # the baseline every hostile variant is derived from
    src = _src(GOOD.encode())
    assert src.task_type == "classification" and src.feature_names == ["a", "b"]


# ---------------------------------------------------------------------------------------------- shape


def test_empty_file_bytes_and_upload(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(TaskError, match="empty"):
        _src(empty)
    with pytest.raises(TaskError, match=r"empty \(no header row\)"):
        _src(b"")
    with pytest.raises(TaskError, match=r"empty \(no header row\)"):
        _src(b"\n\n  \r\n")
    with pytest.raises(TaskError, match="up.csv is empty"):
        read_csv_upload(b"", "up.csv")
    with pytest.raises(TaskError, match=r"up.csv is empty \(no header row\)"):
        read_csv_upload(b"\n\n", "up.csv")


def test_header_only() -> None:
    with pytest.raises(TaskError, match="header but no data rows"):
        _src(b"task,a,b,y\n")
    with pytest.raises(TaskError, match="no data rows"):
        read_csv_upload(b"task,a,b,y\n", "h.csv")


def test_no_header_row_is_named() -> None:
    data = ("1.5,2,3,0\n" + _rows()).encode()
    with pytest.raises(TaskError, match=r"unknown target column 'y'.*needs a header row"):
        _src(data)
    # Named columns that happen not to match get no header hint.
    with pytest.raises(TaskError, match=r"unknown target column 'y'; columns are \['task', 'a', 'b', 'z'\]$"):
        _src(GOOD.replace(",y\n", ",z\n", 1).encode())


def test_unknown_target_and_task_columns() -> None:
    with pytest.raises(TaskError, match="unknown target column 'label'"):
        _src(GOOD.encode(), target="label")
    with pytest.raises(TaskError, match="unknown task column 'site'"):
        _src(GOOD.encode(), task="site")
    with pytest.raises(TaskError, match="must differ"):
        _src(GOOD.encode(), target="task")
    with pytest.raises(TaskError, match="bad arguments for task source 'tabular'"):
        make_task_source("tabular", data=GOOD.encode(), target_column="y")


def test_non_numeric_feature_values() -> None:
    text = GOOD.replace("t1,0.5,-1,1", "t1,abc,-1,1")
    with pytest.raises(TaskError, match="feature column 'a' is not numeric"):
        _src(text.encode())
    with pytest.raises(TaskError, match="feature column 'b' is not numeric"):
        _src(GOOD.replace("t1,0.5,-1,1", "t1,0.5,1e5x,1").encode())


@pytest.mark.parametrize("cell", ["nan", "NaN", "", "inf", "-inf", "Infinity", "1e400", "NA", "null"])
def test_nan_and_infinity_in_a_feature(cell: str) -> None:
    text = GOOD.replace("t1,0.5,-1,1", f"t1,{cell},-1,1")
    with pytest.raises(TaskError, match=r"missing or non-finite values \(NaN/inf.*'a': 1"):
        _src(text.encode())


@pytest.mark.parametrize("cell", ["nan", "", "inf", "-1e999"])
def test_nan_and_infinity_in_the_target(cell: str) -> None:
    text = "task,a,b,y\n" + _rows(target=lambda i: i * 0.37)
    text = text.replace("t1,0.5,-1,0.37", f"t1,0.5,-1,{cell}")
    with pytest.raises(TaskError, match=r"non-finite values.*'y': 1"):
        _src(text.encode(), task_type="regression")
    with pytest.raises(TaskError, match=r"non-finite values.*'y': 1"):
        _src(text.encode())  # auto


def test_values_too_large_to_standardise() -> None:
    huge = "task,a,b,y\n" + "".join(f"t{i % 3},{(-1) ** i * 1.7e308},{i},{i % 2}\n" for i in range(30))
    with pytest.raises(TaskError, match=r"too large to standardise.*\['a'\]"):
        _src(huge.encode())
    target = "task,a,b,y\n" + "".join(f"t{i % 3},{i},{i},{(-1) ** i * 1.7e308}\n" for i in range(30))
    with pytest.raises(TaskError, match="too large to standardise.*target column 'y'"):
        _src(target.encode(), task_type="regression")
    # Finite train statistics, but a held-out row lands beyond float32 once standardised.
    far = "task,a,y\nt0,0.0,0\nt0,1.0,1\nt1,3.4e38,0\nt1,0.0,1\n"
    with pytest.raises(TaskError, match=r"too large for float32 once standardised in columns \['a'\]"):
        _src(far.encode(), split_fractions=(1.0, 0.0, 0.0))
    far_y = "task,a,y\nt0,0.0,0.5\nt0,1.0,0.25\nt1,3.0,3.4e38\nt1,0.0,1.5\n"
    with pytest.raises(TaskError, match="too large for float32 once standardised in target column 'y'"):
        _src(far_y.encode(), task_type="regression", split_fractions=(1.0, 0.0, 0.0))


def test_one_class_only() -> None:
    with pytest.raises(TaskError, match=r"target column 'y' has only one class \('same'\)"):
        _src(("task,a,b,y\n" + _rows(target=lambda i: "same")).encode())
    with pytest.raises(TaskError, match="only one class"):
        _src(("task,a,b,y\n" + _rows(target=lambda i: 7)).encode(), task_type="classification")


def test_task_with_fewer_rows_than_shots() -> None:
    src = _src(("task,a,b,y\n" + _rows(rows=4, target=lambda i: i * 0.1)).encode())
    assert src.task_type == "regression"
    task = src.get_task("t0")
    with pytest.raises(TaskError, match=r"task 't0' has 4 rows, fewer than support_shots \+ query_shots = 3 \+ 2"):
        task.sample_episode(3, 2, np.random.default_rng(0))
    cls = _src(("task,a,b,y\n" + _rows(rows=4)).encode())
    with pytest.raises(TaskError, match=r"task 't0' has too few rows for 2 shots \+ 1 queries per class"):
        cls.get_task("t0").sample_episode(2, 1, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------- caps


def test_too_many_columns() -> None:
    names = ["task", "y"] + [f"f{i}" for i in range(MAX_COLUMNS - 1)]
    row = ["t0", "1"] + ["0.5"] * (MAX_COLUMNS - 1)
    data = (",".join(names) + "\n" + ",".join(row) + "\n").encode()
    with pytest.raises(TaskError, match=rf"{MAX_COLUMNS + 1} columns, more than MAX_COLUMNS={MAX_COLUMNS}"):
        _src(data)
    with pytest.raises(TaskError, match="MAX_COLUMNS"):
        read_csv_upload(data, "wide.csv")
    wide = pd.DataFrame(np.zeros((2, MAX_COLUMNS + 1)), columns=names)
    with pytest.raises(TaskError, match="MAX_COLUMNS"):
        _src(wide)
    # Exactly at the cap is fine.
    ok = (
        ",".join(names[:-1])
        + "\n"
        + "".join(f"t{i % 2},{i % 2}," + ",".join(["0.5"] * (MAX_COLUMNS - 2)) + "\n" for i in range(8))
    )
    assert _src(ok.encode()).input_shape == (MAX_COLUMNS - 2,)


def test_too_many_rows() -> None:
    data = "task,a,y\n" + "t0,1,0\nt1,2,1\n" * (MAX_ROWS // 2) + "t2,3,0\n"
    with pytest.raises(TaskError, match=f"more than MAX_ROWS={MAX_ROWS} data rows"):
        _src(data.encode())
    frame = pd.DataFrame({"task": np.zeros(MAX_ROWS + 1), "a": 0.0, "y": 0.0})
    with pytest.raises(TaskError, match="MAX_ROWS"):
        _src(frame)


def test_too_many_classes() -> None:
    text = "task,a,b,y\n" + "".join(
        f"t{i % 3},{i},{i},c{i % (MAX_CLASSES + 1)}\n" for i in range(3 * (MAX_CLASSES + 1))
    )
    with pytest.raises(TaskError, match=rf"'y' has {MAX_CLASSES + 1} classes, more than MAX_CLASSES={MAX_CLASSES}"):
        _src(text.encode())
    floats = "task,a,b,y\n" + "".join(f"t{i % 3},{i},{i},{i * 0.01}\n" for i in range(300))
    with pytest.raises(TaskError, match="MAX_CLASSES"):
        _src(floats.encode(), task_type="classification")
    assert _src(floats.encode()).task_type == "regression"  # auto picks regression


def test_file_larger_than_the_byte_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tab, "MAX_CSV_BYTES", 100)
    big = GOOD.encode()
    assert len(big) > 100
    path = tmp_path / "big.csv"
    path.write_bytes(big)
    with pytest.raises(TaskError, match="more than MAX_CSV_BYTES=100"):
        _src(path)
    for data in (big, io.BytesIO(big), io.StringIO(GOOD)):
        with pytest.raises(TaskError, match="larger than MAX_CSV_BYTES=100"):
            _src(data)


# ---------------------------------------------------------------------------------------------- bytes


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32(encoding: str) -> None:
    with pytest.raises(TaskError, match="UTF-16 text|NUL bytes: it is a binary file or UTF-16 text"):
        _src(GOOD.encode(encoding))
    with pytest.raises(TaskError, match="u.csv .*UTF-16"):
        read_csv_upload(GOOD.encode(encoding), "u.csv")


def test_latin1_and_invalid_utf8() -> None:
    latin = GOOD.replace("task,a,", "task,café,").encode("latin-1")
    with pytest.raises(TaskError, match=r"not UTF-8 text \(byte 0xe9 at position 8\); save it as UTF-8"):
        _src(latin)
    with pytest.raises(TaskError, match=r"not UTF-8 text \(byte 0xff"):
        _src(b"task,a,b,y\n\xff\xfe\xfa,1,2,3\n")
    with pytest.raises(TaskError, match=r"l.csv is not UTF-8 text"):
        read_csv_upload(latin, "l.csv")
    # UTF-8 with a byte-order mark (Excel's "CSV UTF-8") is fine, and so is UTF-8 text.
    assert _src(b"\xef\xbb\xbf" + GOOD.encode()).feature_names == ["a", "b"]
    assert _src(GOOD.replace("task,a,", "task,café,").encode()).feature_names == ["café", "b"]


def test_binary_file_named_csv(tmp_path: Path) -> None:
    import zipfile

    from PIL import Image

    png = io.BytesIO()
    Image.new("L", (8, 8)).save(png, format="PNG")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("a.csv", GOOD)
    rng = np.random.default_rng(0)
    blobs = {
        "png": png.getvalue(),
        "zip": zipped.getvalue(),
        "random": rng.bytes(4000),
        "elf": b"\x7fELF\x02\x01\x01" + bytes(200),
    }
    for kind, blob in blobs.items():
        path = tmp_path / f"{kind}.csv"
        path.write_bytes(blob)
        with pytest.raises(TaskError, match="binary file|not UTF-8 text"):
            _src(path)
        with pytest.raises(TaskError, match="binary file|not UTF-8 text"):
            read_csv_upload(blob, f"{kind}.csv")
    with pytest.raises(TaskError, match="NUL characters"):
        _src(io.StringIO(GOOD.replace("t1", "t\x001")))


def test_duplicate_column_names() -> None:
    with pytest.raises(TaskError, match=r"duplicate column names \['a'\]"):
        _src(GOOD.replace("task,a,b,y", "task,a,a,y").encode())
    with pytest.raises(TaskError, match=r"duplicate column names \['y'\]"):
        read_csv_upload(GOOD.replace("task,a,b,y", "task,a,y,y").encode(), "d.csv")
    # pandas would rename a second "a" to "a.1": a real "a.1" column is not a duplicate.
    assert _src(GOOD.replace("task,a,b,y", "task,a,a.1,y").encode()).feature_names == ["a", "a.1"]
    frame = pd.DataFrame(np.zeros((4, 3)), columns=["a", "a", "y"]).assign(task=["p", "q"] * 2)
    with pytest.raises(TaskError, match=r"duplicate column names \['a'\]"):
        _src(frame)
    # 1 and "1" become the same name.
    mixed = pd.DataFrame({1: [0.0, 1.0], "1": [1.0, 2.0], "y": [0, 1], "task": ["p", "q"]})
    with pytest.raises(TaskError, match=r"duplicate column names \['1'\]"):
        _src(mixed)


def test_ragged_rows() -> None:
    one_long = GOOD + "t1,2,3,4,5\n"
    with pytest.raises(TaskError, match=r"could not be parsed: .*Expected 4 fields in line \d+, saw 5"):
        _src(one_long.encode())
    # One extra field on every row: pandas would silently use the first column as an index.
    all_long = "task,a,b,y\n" + "".join(line + ",9\n" for line in _rows().splitlines())
    with pytest.raises(TaskError, match="rows with more fields than the header"):
        _src(all_long.encode())
    short = GOOD + "t1,2\n"
    with pytest.raises(TaskError, match=r"non-finite values \(NaN/inf, empty cells, short rows\).*'b': 1, 'y': 1"):
        _src(short.encode())
    with pytest.raises(TaskError, match="could not be parsed: .*EOF inside string"):
        _src(b'task,a,b,y\n"t1,1,2,0\n' + _rows().encode())


def test_csv_injection_cells_are_plain_data(tmp_path: Path) -> None:
    formulas = ["=cmd|' /C calc'!A0", "+SUM(1+1)*cmd|' /C calc'!A0", "@SUM(A1)", "-2+3+cmd|' /C calc'!A0"]
    lines = ["task,a,b,y"]
    for i in range(24):
        field = formulas[i % 4].replace('"', '""')
        lines.append(f'"{field}",{i},{-i},{i % 2}')
    cwd_before = sorted(os.listdir(os.getcwd()))
    src = _src(("\n".join(lines) + "\n").encode())
    assert sorted(src.task_names("train") + src.task_names("val") + src.task_names("test")) == sorted(formulas)
    assert src.get_task(formulas[0]).name == formulas[0]
    assert sorted(os.listdir(os.getcwd())) == cwd_before
    # As a feature the formula is text, so the column is not numeric.
    with pytest.raises(TaskError, match="feature column 'a' is not numeric"):
        _src(GOOD.replace("t1,0.5,-1,1", "t1,=1+2,-1,1").encode())
    # As class labels they are names, kept verbatim.
    labels = "task,a,b,y\n" + "".join(f"t{i % 3},{i},{i},{'=A1' if i % 2 else '@B2'}\n" for i in range(24))
    assert _src(labels.encode()).class_names == ["=A1", "@B2"]


# ---------------------------------------------------------------------------------------------- properties

_EXTRA_NAMES = st.sampled_from(["", "a", "y", "a.1", "Unnamed: 0", "x,y", 'q"t', "é", " y", "=A1"])
_HOSTILE_CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(10**20), 10**20),
    st.sampled_from(["", "nan", "inf", "-Infinity", "NA", "True", "false", "=cmd|' /C calc'!A0", "1e400", '"', ","]),
    st.text(max_size=6),
)


@st.composite
def _tables(draw) -> tuple[list[str], list[list]]:
    """A header with task, y and a (plus random extra names) and rows of mostly valid cells;
    about one cell in ten is hostile, and a row may be short or long."""
    names = ["task", "y", "a", *draw(st.lists(_EXTRA_NAMES, max_size=3))]
    names = draw(st.permutations(names))
    good = {
        "task": st.sampled_from(["t0", "t1", "t2", "3"]),
        "y": st.one_of(st.integers(0, 2), st.floats(-5, 5)),
    }
    rows = []
    for _ in range(draw(st.integers(0, 16))):
        row = []
        for name in names:
            if draw(st.integers(0, 9)) == 0:
                row.append(draw(_HOSTILE_CELLS))
            else:
                row.append(draw(good.get(name, st.floats(-1e6, 1e6))))
        cut = draw(st.sampled_from([len(row)] * 8 + [len(row) - 1, len(row) + 1]))
        rows.append((row + ["9"])[:cut])
    return names, rows


def _check_source(src: TabularTaskSource) -> None:
    """Invariants of a source built from hostile input."""
    assert src.input_shape == (len(src.feature_names),) and src.feature_names
    assert src.task_type in ("classification", "regression")
    for task in src.all_tasks():
        x, y = task.rows()
        assert x.dtype == np.float32 and np.isfinite(x).all()
        if src.task_type == "classification":
            assert 2 <= src.output_dim <= MAX_CLASSES and ((y >= 0) & (y < src.output_dim)).all()
        else:
            assert np.isfinite(y).all()


def _must_build_or_refuse(data, **kw) -> None:
    try:
        src = TabularTaskSource(data, "y", "task", **kw)
    except TaskError as exc:
        assert str(exc)
        return
    _check_source(src)


@given(data=st.binary(max_size=600))
@settings(max_examples=120, deadline=None)
def test_property_arbitrary_bytes(data: bytes) -> None:
    _must_build_or_refuse(data)
    try:
        read_csv_upload(data, "up.csv")
    except TaskError:
        pass


@given(text=st.text(max_size=400))
@settings(max_examples=120, deadline=None)
def test_property_arbitrary_text(text: str) -> None:
    _must_build_or_refuse(text.encode("utf-8", "surrogatepass"))
    _must_build_or_refuse(io.StringIO(text))


@given(
    table=_tables(),
    quoted=st.booleans(),
    task_type=st.sampled_from(["auto", "classification", "regression"]),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_random_small_tables(table, quoted: bool, task_type: str) -> None:
    names, rows = table
    if quoted:  # well-formed CSV quoting (cells may still be ragged, empty or text)
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(names)
        writer.writerows(rows)
        text = buf.getvalue()
    else:  # naive joins: stray quotes and commas inside cells break the format
        text = "\n".join(",".join(str(c) for c in r) for r in [names, *rows]) + "\n"
    data = text.encode("utf-8", "surrogatepass")
    with tempfile.TemporaryDirectory() as work:
        cwd = os.getcwd()
        os.chdir(work)
        try:
            _must_build_or_refuse(data, task_type=task_type)
        finally:
            os.chdir(cwd)
        assert os.listdir(work) == []


@given(
    n=st.integers(1, 30),
    seed=st.integers(0, 2**16),
    nan_rate=st.sampled_from([0.0, 0.0, 0.05, 0.3]),
    text_rate=st.sampled_from([0.0, 0.0, 0.05]),
    n_classes=st.integers(1, 4),
)
@settings(max_examples=60, deadline=None)
def test_property_numeric_tables_with_holes(
    n: int, seed: int, nan_rate: float, text_rate: float, n_classes: int
) -> None:
    """Mostly valid tables with random NaNs, empty cells and stray strings."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "task": rng.choice(["p", "q", "r"], n),
            "a": rng.normal(size=n),
            "b": rng.normal(size=n) * 1e3,
            "y": rng.integers(0, n_classes, n),
        }
    ).astype(object)
    holes = rng.random(frame.shape) < nan_rate
    frame = frame.mask(holes, rng.choice([np.nan, "", "inf"]))
    junk = rng.random(frame.shape) < text_rate
    frame = frame.mask(junk, "oops")
    data = frame.to_csv(index=False).encode()
    clean = not holes.any() and not junk.any()
    try:
        src = TabularTaskSource(data, "y", "task")
    except TaskError as exc:
        assert not clean or "only one class" in str(exc), exc
        return
    _check_source(src)
    assert src.task_type == "classification"
    assert read_csv(data).shape == frame.shape
