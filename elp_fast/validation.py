"""The one set of value checks behind every validated setting (ELPConfig, EngineConfig, task
recipes, command-line flags). A `Rule` knows what it accepts and how to say so; every failure
reads `NAME: got VALUE; expected WHAT` and is raised as the caller's own error class (a
ValueError subclass), so messages look the same wherever a setting is checked.

Layer specs ("all", "all_but_last", "none" or 0-based indices) are parsed here too, for the
adapters' layers and for activation checkpointing alike."""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Union

LayerSpec = Union[str, list]
LAYER_KEYWORDS = ("all", "all_but_last", "none")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float (bools are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fail(name: str, value: Any, expected: str, error: type = ValueError) -> None:
    raise error(f"{name}: got {value!r}; expected {expected}")


class Rule(NamedTuple):
    accepts: Callable[[Any], bool]
    expected: str

    def check(self, name: str, value: Any, error: type = ValueError) -> Any:
        if not self.accepts(value):
            fail(name, value, self.expected, error)
        return value


def int_at_least(minimum: int) -> Rule:
    return Rule(lambda v: is_int(v) and v >= minimum, f"an integer >= {minimum}")


def number_at_least(minimum: float, *, strict: bool = False, note: str = "") -> Rule:
    """A finite number >= minimum (> minimum when strict)."""
    ok = (lambda v: is_number(v) and v > minimum) if strict else (lambda v: is_number(v) and v >= minimum)
    return Rule(ok, f"a finite number {'>' if strict else '>='} {minimum:g}{note}")


def number_in(lo: float, hi: float, *, closed_hi: bool = False) -> Rule:
    return Rule(lambda v: is_number(v) and lo <= v and (v <= hi if closed_hi else v < hi),
                f"a number in [{lo:g}, {hi:g}{']' if closed_hi else ')'}")


def one_of(*choices: Any, optional: bool = False) -> Rule:
    allowed = " or ".join(repr(c) for c in choices) + (" (or None)" if optional else "")
    return Rule(lambda v: (optional and v is None) or (not isinstance(v, bool) and v in choices), allowed)


BOOLEAN = Rule(lambda v: isinstance(v, bool), "True or False")


def parse_layer_spec(name: str, value: Any, error: type = ValueError,
                     keywords: tuple = LAYER_KEYWORDS) -> LayerSpec:
    """A keyword from `keywords`, or distinct 0-based layer indices given as a list / tuple or as
    a comma-separated string ("0,1,2", as a command line gives them). Returns the keyword or
    the sorted indices; range checks need the backbone (resolve_layer_spec)."""
    words = " or ".join(repr(k) for k in keywords)
    if isinstance(value, str):
        if value in keywords:
            return value
        parts = [p.strip() for p in value.split(",")]
        if not all(p.isdigit() for p in parts):
            fail(name, value, f"{words} or a list of 0-based layer indices", error)
        value = [int(p) for p in parts]
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or not all(is_int(i) and i >= 0 for i in value):
        fail(name, value, f"{words} or a list of 0-based layer indices (ints >= 0)", error)
    if len(set(value)) != len(value):
        fail(name, value, "a list of distinct layer indices", error)
    return sorted(value)


def resolve_layer_spec(name: str, spec: LayerSpec, num_layers: int, error: type = ValueError) -> list[int]:
    """The sorted 0-based indices a parsed layer spec names on a backbone of `num_layers` layers."""
    if spec == "all":
        return list(range(num_layers))
    if spec == "all_but_last":
        return list(range(num_layers - 1))
    if spec == "none":
        return []
    bad = [i for i in spec if i >= num_layers]
    if bad:
        raise error(f"{name}: got layer indices {bad}; this backbone has {num_layers} encoder layers, so "
                    f"indices must be in 0..{num_layers - 1}")
    return sorted(spec)
