"""The test run's own schedule: `make test` starts the longest files first (tests/conftest.py's SLOW_FILES_FIRST),
which only holds while every listed file exists and pytest-xdist is told to keep that order."""

from pathlib import Path

import conftest

ROOT = Path(__file__).resolve().parents[1]


def test_every_slow_file_listed_exists_once():
    listed = conftest.SLOW_FILES_FIRST
    assert len(set(listed)) == len(listed)
    assert [p for p in listed if not (ROOT / p).is_file()] == []


def test_make_test_keeps_the_collection_order():
    makefile = (ROOT / "Makefile").read_text()
    pytest_line = next(line for line in makefile.splitlines() if line.startswith("PYTEST :="))
    assert "--dist loadfile" in pytest_line and "--no-loadscope-reorder" in pytest_line


def test_slow_files_sort_first_and_the_rest_keep_their_order():
    class Item:
        def __init__(self, nodeid):
            self.nodeid = nodeid

    first, second = conftest.SLOW_FILES_FIRST[:2]
    items = [Item("tests/test_a.py::x"), Item(f"{second}::y"), Item("tests/test_b.py::z"), Item(f"{first}::w")]
    conftest.pytest_collection_modifyitems(None, items)
    assert [i.nodeid for i in items] == [f"{first}::w", f"{second}::y", "tests/test_a.py::x", "tests/test_b.py::z"]
