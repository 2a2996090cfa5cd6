"""Argument types and errors shared by the ``rankcore`` subcommands."""
from __future__ import annotations

import argparse
import json
import signal

__all__ = ["PROG", "EXIT_BROKEN_PIPE", "CommandError", "parse_key_values", "merge_dicts"]

PROG = "rankcore"

#: Exit status after a write into a closed pipe: 128 + SIGPIPE, what a shell reports for a tool
#: that SIGPIPE killed (Python ignores SIGPIPE, so it would otherwise see BrokenPipeError).
EXIT_BROKEN_PIPE = 128 + int(getattr(signal, "SIGPIPE", 13))


class CommandError(Exception):
    """A user error: printed as one line, exit status 1."""


# --------------------------------------------------------------------------- argument types
def parse_key_values(text: str, what: str) -> dict:
    """``"K=V"`` or ``"K1=V1,K2=V2"`` (the AWS CLI shorthand for a string map) -> dict."""
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"{what} must look like KEY=VALUE, got {text!r}")
        out[key.strip()] = value
    return out


def json_object_arg(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{what} must be a JSON object, got {text!r}")
    return value


def is_json(text: str) -> bool:
    return text.lstrip().startswith("{")


def string_map(value: dict, what: str) -> dict:
    for k, v in value.items():
        if not isinstance(v, str):
            raise argparse.ArgumentTypeError(f"{what} value for {k!r} must be a string, got {v!r}")
    return value


def context_arg(text: str) -> dict:
    """``DEVICE=mobile`` or ``K1=V1,K2=V2`` (the AWS CLI shorthand), or the JSON object the AWS
    CLI also takes: ``{"DEVICE": "mobile phone"}``."""
    if is_json(text):
        return string_map(json_object_arg(text, "--context"), "--context")
    return parse_key_values(text, "--context")


def metadata_arg(text: str) -> dict:
    """``ITEMS=genre`` or ``ITEMS=genre,price`` -> ``{"ITEMS": ["genre", "price"]}``; or the JSON
    object the AWS CLI takes: ``{"ITEMS": ["genre", "price"]}``."""
    if is_json(text):
        value = json_object_arg(text, "--metadata-columns")
        for k, v in value.items():
            if not isinstance(v, list) or not all(isinstance(c, str) for c in v):
                raise argparse.ArgumentTypeError(
                    f"--metadata-columns value for {k!r} must be a list of column names, got {v!r}")
        return value
    key, sep, cols = text.partition("=")
    if not sep or not key.strip() or not cols:
        raise argparse.ArgumentTypeError(f"--metadata-columns must look like ITEMS=col1,col2 or "
                                         f'{{"ITEMS": ["col1", "col2"]}}, got {text!r}')
    return {key.strip(): [c for c in cols.split(",") if c]}


def filter_values_arg(text: str) -> dict:
    """A JSON object ``{"G": "\"Comedy\""}``, or one ``KEY=VALUE`` per flag: everything after the
    first ``=`` is the value, commas included (``G="Comedy","Drama"``)."""
    if is_json(text):
        return string_map(json_object_arg(text, "--filter-values"), "--filter-values")
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f"--filter-values must look like KEY=VALUE or a JSON object, got {text!r}")
    return {key.strip(): value}


def workers(text: str):
    """``--workers``: a positive integer or ``auto`` (resolved by ``rankcore.serve``)."""
    return "auto" if text.strip().lower() == "auto" else positive_int(text)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def merge_dicts(dicts) -> dict | None:
    if not dicts:
        return None
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            if isinstance(v, list) and isinstance(out.get(k), list):
                out[k] = out[k] + v
            else:
                out[k] = v
    return out

