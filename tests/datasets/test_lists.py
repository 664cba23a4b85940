"""List-file lines: the tab-separated format, names with spaces, and what cannot be written."""

from __future__ import annotations

import pytest

from lib.datasets.lists import format_row, parse_line, write_list


@pytest.mark.parametrize(
    "row",
    [
        ["a/b.png", "c/d.png"],
        ["a/b.png"],
        ["a/DJI 0001.jpg", "c/DJI 0001.png"],
        ["a/DJI 0001.jpg"],
    ],
)
def test_rows_round_trip_through_a_line(row):
    assert parse_line(format_row(row)) == row


def test_official_whitespace_lines_still_parse():
    assert parse_line("a.png   b.png") == ["a.png", "b.png"]
    assert parse_line("  a.png\n") == ["a.png"]
    assert parse_line("a.png\tb.png") == ["a.png", "b.png"]
    assert parse_line("   ") == []
    assert format_row(["a.png", "b.png"]) == "a.png\tb.png"  # what `split()` readers accept


@pytest.mark.parametrize("name", ["a\tb.png", "a\nb.png", " a.png", "a.png "])
def test_names_that_cannot_round_trip_are_refused(name):
    with pytest.raises(ValueError, match="cannot be written to a list file"):
        format_row([name, "x.png"])


def test_write_list_uses_tabs(tmp_path):
    write_list(tmp_path / "l.lst", [["i/a b.png", "l/a b.png"], ["i/c.png"]])
    assert (tmp_path / "l.lst").read_text() == "i/a b.png\tl/a b.png\ni/c.png\n"
