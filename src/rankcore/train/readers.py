"""Readers for Personalize's datasets: Interactions, Items and Users, as CSV (optionally gzip) or Parquet.

The files are what a Personalize user already holds (see docs/personalize.md): a header row,
UTF-8. Interactions need ``USER_ID``, ``ITEM_ID`` and ``TIMESTAMP`` (epoch seconds); ``EVENT_TYPE``
and ``EVENT_VALUE`` are optional; other columns are context metadata. Items need ``ITEM_ID``, Users
``USER_ID``; their other columns are metadata (strings are categorical, ``|`` separating several
values; numbers; ``CREATION_TIMESTAMP``). Column names are matched case-insensitively and
upper-cased. pandas (with the pyarrow engine when installed) parses the files; an optional
Personalize schema (Avro JSON) fixes the column types, otherwise they are inferred and
:meth:`Dataset.describe` says what was inferred. Bad data raises ``ValueError`` naming the file,
the line (the header is line 1) and the column, before anything is written anywhere.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Dataset", "read_interactions", "read_items", "read_users", "load_schema", "MAX_ID_LENGTH"]

#: Personalize's limit on USER_ID and ITEM_ID length.
MAX_ID_LENGTH = 256

_NUMERIC_AVRO = {"long": "long", "int": "long", "float": "float", "double": "float"}
_REQUIRED = {"Interactions": ("USER_ID", "ITEM_ID", "TIMESTAMP"), "Items": ("ITEM_ID",),
             "Users": ("USER_ID",)}
_FIXED = {"USER_ID": "string", "ITEM_ID": "string", "TIMESTAMP": "long", "EVENT_TYPE": "string",
          "EVENT_VALUE": "float", "CREATION_TIMESTAMP": "long", "IMPRESSION": "string",
          "RECOMMENDATION_ID": "string"}


@dataclass
class Dataset:
    """One dataset read into memory.

    ``frame`` is a pandas DataFrame with upper-case column names; ``types`` maps each column to
    ``"string"``, ``"categorical"`` (strings, ``|`` for multiple values), ``"long"`` or ``"float"``;
    ``inferred`` is True when no schema fixed them; ``checksum`` is the SHA-256 of the file.
    """

    kind: str
    path: str
    frame: object
    types: dict
    inferred: bool
    checksum: str = field(repr=False)

    def __len__(self) -> int:
        return len(self.frame)

    def describe(self) -> str:
        how = "inferred" if self.inferred else "from the schema"
        cols = ", ".join(f"{c}: {t}" for c, t in self.types.items())
        return f"{self.kind} {self.path}: {len(self.frame)} rows; column types ({how}): {cols}"


def load_schema(schema) -> dict:
    """A Personalize schema (Avro JSON text, a path to one, or a dict) -> ``{COLUMN: type}``.

    Types are ``"string"``, ``"categorical"``, ``"long"`` or ``"float"``; a nullable union such as
    ``["null", "string"]`` counts as its non-null member.
    """
    if isinstance(schema, (str, os.PathLike)) and os.path.exists(schema):
        with open(schema, encoding="utf-8") as f:
            schema = f.read()
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise ValueError(f"schema is not valid JSON ({exc})") from None
    if not isinstance(schema, dict) or not isinstance(schema.get("fields"), list):
        raise ValueError("schema must be an Avro record: {\"type\": \"record\", \"fields\": [...]}")
    out = {}
    for f in schema["fields"]:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise ValueError(f"schema field {f!r} has no name")
        kind = f.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            kind = kinds[0] if len(kinds) == 1 else None
        if kind == "string":
            kind = "categorical" if f.get("categorical") else "string"
        elif kind in _NUMERIC_AVRO:
            kind = _NUMERIC_AVRO[kind]
        else:
            raise ValueError(f"schema field {f['name']!r}: unsupported type {f.get('type')!r}")
        out[f["name"].upper()] = kind
    return out


def _where(path: str, row: int | None, column: str | None) -> str:
    parts = [path]
    if row is not None:
        parts.append(f"line {row + 2}")  # the header is line 1
    if column is not None:
        parts.append(f"column {column}")
    return ": ".join(parts)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_frame(path: str, kinds: dict):
    """The file as a DataFrame, empty cells missing; ``kinds`` maps upper-case names to types.

    With pyarrow, columns of a known type are parsed as that type and the others inferred; if
    that fails anywhere, every column is re-read as strings so the checks that follow can name
    the offending line and column.
    """
    import pandas as pd  # optional extra (rankcore[train])

    if path.lower().endswith((".parquet", ".pq")):
        try:
            return pd.read_parquet(path)
        except ImportError as exc:
            raise ImportError(f"{path}: reading Parquet needs pyarrow ({exc})") from None
    with open(path, "rb") as f:
        compression = "gzip" if f.read(2) == b"\x1f\x8b" else None
    try:
        header = [str(c) for c in pd.read_csv(path, nrows=0, compression=compression,
                                               encoding="utf-8").columns]
        try:
            import pyarrow as pa  # optional: the faster, multi-threaded CSV reader
            import pyarrow.csv as pacsv
        except ImportError:
            return pd.read_csv(path, dtype=str, compression=compression, encoding="utf-8",
                               keep_default_na=False, na_values=[""])
        arrow = {"string": pa.string(), "categorical": pa.string(), "long": pa.float64(),
                 "float": pa.float64()}  # longs read as float64 (exact below 2**53), checked after
        typed = {c: arrow[kinds[c.upper()]] for c in header if c.upper() in kinds}
        for attempt in (typed, {c: pa.string() for c in header}):
            convert = pacsv.ConvertOptions(column_types=attempt, null_values=[""],
                                           strings_can_be_null=True)
            try:
                with pa.input_stream(path, compression=compression) as stream:
                    return pacsv.read_csv(stream, convert_options=convert).to_pandas()
            except pa.ArrowInvalid:
                if attempt is not typed:
                    raise
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 ({exc})") from None
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:  # ArrowInvalid too
        raise ValueError(f"{path}: cannot parse as CSV ({' '.join(str(exc).split())})") from None


def _check_ids(path: str, frame, col: str, unique: bool) -> None:
    s = frame[col]
    empty = s.isna().to_numpy() | (s.astype(str).str.len().to_numpy() == 0)
    if empty.any():
        raise ValueError(f"{_where(path, int(np.argmax(empty)), col)}: empty ID")
    long = s.str.len().to_numpy() > MAX_ID_LENGTH
    if long.any():
        r = int(np.argmax(long))
        raise ValueError(f"{_where(path, r, col)}: ID of {len(s.iloc[r])} characters "
                         f"(at most {MAX_ID_LENGTH})")
    if unique:
        dup = s.duplicated().to_numpy()
        if dup.any():
            r = int(np.argmax(dup))
            raise ValueError(f"{_where(path, r, col)}: {col} {s.iloc[r]!r} appears twice")


def _numeric(path: str, frame, col: str, kind: str, required: bool):
    import pandas as pd  # optional extra (rankcore[train])

    s = frame[col]
    was_missing = s.isna().to_numpy()
    if s.dtype.kind in "iufb":  # parsed as numbers already
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        v = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
    bad = (np.isnan(v) & ~was_missing) | np.isinf(v)
    if bad.any():
        r = int(np.argmax(bad))
        what = "timestamp" if "TIMESTAMP" in col else "number"
        raise ValueError(f"{_where(path, r, col)}: cannot parse {s.iloc[r]!r} as a {what}")
    if required and was_missing.any():
        raise ValueError(f"{_where(path, int(np.argmax(was_missing)), col)}: missing value")
    if kind == "long" and not was_missing.any() and (v == np.floor(v)).all():
        return v.astype(np.int64)
    return v


def _infer(frame, col: str) -> str:
    """``long``/``float`` when every present value parses as a number, else ``categorical``."""
    import pandas as pd  # optional extra (rankcore[train])

    s = frame[col]
    if s.dtype.kind in "iufb":
        return "long" if s.dtype.kind in "iub" else "float"
    present = s.dropna()
    if not len(present):
        return "categorical"
    head = pd.to_numeric(present.iloc[:1000], errors="coerce").astype("float64").to_numpy()
    if np.isnan(head).any():  # a quick no before parsing the whole column
        return "categorical"
    v = pd.to_numeric(present, errors="coerce").astype("float64").to_numpy()
    if np.isnan(v).any():
        return "categorical"
    return "long" if (v == np.floor(v)).all() and np.isfinite(v).all() else "float"


def _read(kind: str, path, schema) -> "Dataset":
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    fixed = load_schema(schema) if schema is not None else None
    kinds = dict(_FIXED)
    kinds.update(fixed or {})
    frame = _read_frame(path, kinds)
    names = [str(c).upper() for c in frame.columns]
    if len(set(names)) != len(names):
        raise ValueError(f"{_where(path, -1, None)}: a column name appears twice in {names}")
    frame.columns = names
    for col in _REQUIRED[kind]:
        if col not in names:
            raise ValueError(f"{_where(path, -1, col)}: missing required column {col} "
                             f"(the header has {names})")
    if fixed is not None:
        absent = [c for c in fixed if c not in names]
        extra = [c for c in names if c not in fixed]
        if absent or extra:
            raise ValueError(f"{path}: columns differ from the schema (missing {absent}, "
                             f"not in the schema {extra})")
    types = {}
    for col in names:
        t = fixed[col] if fixed is not None else _FIXED.get(col) or _infer(frame, col)
        if col in _FIXED and _FIXED[col] == "string":
            t = "string"
        types[col] = t
        if col in ("USER_ID", "ITEM_ID"):
            frame[col] = frame[col].astype(str) if frame[col].dtype.kind != "O" else frame[col]
            _check_ids(path, frame, col, unique=(kind != "Interactions"))
        elif t in ("long", "float"):
            frame[col] = _numeric(path, frame, col, t, required=(col in _REQUIRED[kind]))
        elif frame[col].dtype.kind != "O":  # Parquet numbers declared as strings
            frame[col] = frame[col].astype("string")
    return Dataset(kind, path, frame, types, fixed is None, _sha256(path))


def read_interactions(path, schema=None) -> Dataset:
    """Read an Interactions dataset (``USER_ID``, ``ITEM_ID``, ``TIMESTAMP`` required)."""
    return _read("Interactions", path, schema)


def read_items(path, schema=None) -> Dataset:
    """Read an Items dataset (``ITEM_ID`` + metadata; IDs must be unique)."""
    return _read("Items", path, schema)


def read_users(path, schema=None) -> Dataset:
    """Read a Users dataset (``USER_ID`` + metadata; IDs must be unique)."""
    return _read("Users", path, schema)
