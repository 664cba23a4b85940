"""lib.utils.options.grouped: a settings object, or its fields one by one, never both."""

from dataclasses import dataclass

import pytest

from lib.utils.options import grouped


@dataclass(frozen=True)
class Opts:
    a: int = 1
    b: str = "x"


def test_fields_one_by_one_make_the_object_and_leave_the_rest_when_asked():
    options = {"a": 3, "other": 5}
    assert grouped(Opts, None, options, rest=True) == Opts(a=3) and options == {"other": 5}
    assert grouped(Opts, Opts(b="y"), {}) == Opts(b="y")


def test_a_field_given_both_ways_or_an_unknown_one_is_refused():
    with pytest.raises(TypeError, match="a given both alone and in a Opts"):
        grouped(Opts, Opts(), {"a": 2})
    with pytest.raises(TypeError, match="Opts: unknown options colour"):
        grouped(Opts, None, {"colour": 1})
