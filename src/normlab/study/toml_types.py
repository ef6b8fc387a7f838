"""TOML values against the type hints of the config fields they set: coercion (an int where a
float is expected, a list for a tuple) and the words an error uses for a type."""

from __future__ import annotations

import types
import typing
from typing import Any


class TypeMismatch(Exception):
    """A TOML value does not have the type a field needs."""


def coerce_value(value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` names (int -> float for float fields, list -> tuple)."""
    if hint is Any:
        return value
    if hint in (bool, str) and isinstance(value, hint):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)  # an int where a float is expected, so 0 and 0.0 hash alike
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and isinstance(value, list):
        return tuple(coerce_value(item, args[0]) for item in value)
    if origin is dict and isinstance(value, dict):
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is not type(None):
                try:
                    return coerce_value(value, arg)
                except TypeMismatch:
                    pass
    raise TypeMismatch


def describe_type(hint: Any) -> str:
    """What ``hint`` asks for, in a spec error's words (``a list of numbers``)."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    plurals = {int: "integers", float: "numbers", str: "strings"}
    if hint in names:
        return names[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        return f"a list of {plurals.get(args[0], 'values')}"
    if origin is dict:
        return "a table"
    return " or ".join(describe_type(arg) for arg in args if arg is not type(None))
