"""One JSON Lines line of a batch job: parsing, validation, and the output line built for it.

Input ``{"userId", "itemList", "filterValues"?, "context"?}`` (other members are ignored); output
``{"input", "output": {"recommendedItems", "scores"}, "error": null}``, ``"input"`` being the line
as read (whitespace stripped), scores rounded to ``SCORE_DECIMALS``. A line that cannot be served
(invalid JSON, a blank line, a missing or mistyped field, ...) raises :class:`_LineError` and gets
``"output": null`` with the message as ``"error"``; its ``"input"`` is the line as read when it is
JSON, its text as a JSON string otherwise. The reasons for this format: docs/personalize.md.
"""
from __future__ import annotations

#: Scores are rounded to this many decimals, as the service's responses are.
SCORE_DECIMALS = 7

_ERRORS = (ValueError, TypeError, LookupError)  # a line's fault; anything else is fatal
_STR_ONLY = frozenset((str,))


def _orjson():
    try:
        import orjson  # lazy: optional third-party dependency (the batch extra)
    except ImportError:  # pragma: no cover - orjson ships with the server/dask extras
        raise ImportError("rankcore batch needs orjson: pip install 'rankcore[batch]'") from None
    return orjson


class _Line:
    """One parsed, validated input line."""

    __slots__ = ("raw", "obj", "request", "n_items")

    def __init__(self, raw: bytes, obj: dict, request: dict, n_items: int):
        self.raw = raw
        self.obj = obj
        self.request = request
        self.n_items = n_items


class _LineError(Exception):
    """A line that cannot be served; ``input`` is the raw JSON (``is_json``) or the text."""

    def __init__(self, input, message: str, is_json: bool = False):
        super().__init__(message)
        self.input = input
        self.message = message
        self.is_json = is_json


def _json_type(value) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _check_str_map(obj: dict, key: str) -> dict | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"'{key}' must be an object of string values")
    for k, v in value.items():
        if not isinstance(v, str):
            raise TypeError(f"'{key}' value for {k!r} must be a string")
    return value


def _parse(raw: bytes, loads, filter_plan, check_items: bool = True) -> _Line:
    """Parse and validate one line (``raw`` without its newline); raises ``_LineError``.

    ``check_items=False`` skips the per-item type check: the caller's ID lookup over the whole
    chunk refuses non-string items instead (and the chunk is then re-ranked with the check).
    """
    try:
        obj = loads(raw)
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        text = raw.decode("utf-8", "replace")
        msg = "empty line" if not text.strip() else f"invalid JSON: {exc}"
        raise _LineError(text, msg) from None
    return _validate(raw, obj, filter_plan, check_items)


def _validate(raw: bytes, obj, filter_plan, check_items: bool = True) -> _Line:
    """Validate one parsed line (see :func:`_parse`); raises ``_LineError``."""
    if not isinstance(obj, dict):
        raise _LineError(raw, f"a line must be a JSON object, got {_json_type(obj)}", True)
    try:
        user = obj.get("userId")
        if user is None:
            raise TypeError("missing required field 'userId'")
        if not isinstance(user, str):
            raise TypeError(f"'userId' must be a string, got {_json_type(user)}")
        items = obj.get("itemList")
        if items is None:
            raise TypeError("missing required field 'itemList'")
        if not isinstance(items, list):
            raise TypeError(f"'itemList' must be a list of strings, got {_json_type(items)}")
        if check_items and items and not _STR_ONLY.issuperset(map(type, items)):  # C speed
            i = next(i for i, item in enumerate(items) if type(item) is not str)
            raise TypeError(f"'itemList' must hold strings, got {_json_type(items[i])} at {i}")
        context = _check_str_map(obj, "context")
        filter_values = _check_str_map(obj, "filterValues")
    except TypeError as exc:
        raise _LineError(raw, str(exc), True) from None
    request = {"user_id": user, "item_ids": items}
    if context:
        request["context"] = context
    if filter_plan is not None:
        request["filter"] = filter_plan
        request["filter_values"] = filter_values or {}
    return _Line(raw, obj, request, len(items))


def _error_line(dumps, input, message: str, is_json: bool = False) -> bytes:
    """The output line of a line that failed (no newline)."""
    if is_json:  # echo valid JSON input as it was read, like the lines that succeed
        return b'{"input":' + input + b',"output":null,"error":' + dumps(message) + b"}"
    return dumps({"input": input, "output": None, "error": message})


def _error_message(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if isinstance(exc, KeyError) and exc.args:  # str(KeyError) is the quoted key only
        msg = f"unknown key {exc.args[0]!r}"
    return msg


def _ok_line(raw: bytes, body: bytes) -> bytes:
    """The output line of a ranked line: ``raw`` is echoed as read (it parsed, so it is valid
    JSON), ``body`` is the serialised ``{"recommendedItems", "scores"}``."""
    return b"".join((b'{"input":', raw, b',"output":', body, b',"error":null}'))
