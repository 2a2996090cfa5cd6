"""Personalize dataset readers: well-formed files in every supported form, malformed files refused.

Every refusal must be a ValueError naming the file, the line (header = line 1) and the column.
"""
import gzip
import json

import numpy as np
import pandas as pd
import pytest

from rankcore.datasets import (load_schema, read_interactions, read_items, read_users,
                               synthetic_interactions)

GOOD = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE,DEVICE\nu1,i1,1700000000,click,0.5,phone\nu2,i2,1700000100,watch,1,desktop\n"


def write(tmp_path, text, name="interactions.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_interactions_types_inferred(tmp_path):
    ds = read_interactions(write(tmp_path, GOOD))
    assert len(ds) == 2 and ds.inferred
    assert ds.types == {"USER_ID": "string", "ITEM_ID": "string", "TIMESTAMP": "long",
                        "EVENT_TYPE": "string", "EVENT_VALUE": "float", "DEVICE": "categorical"}
    assert ds.frame["USER_ID"].tolist() == ["u1", "u2"]
    assert ds.frame["TIMESTAMP"].dtype == np.int64
    assert "inferred" in ds.describe() and "DEVICE: categorical" in ds.describe()
    assert len(ds.checksum) == 64


def test_optional_columns_and_case(tmp_path):
    ds = read_interactions(write(tmp_path, "user_id,Item_Id,timestamp\n007,42,5\n"))
    assert list(ds.frame.columns) == ["USER_ID", "ITEM_ID", "TIMESTAMP"]
    assert ds.frame["USER_ID"].tolist() == ["007"]  # IDs stay strings: leading zeros kept


def test_gzip_and_parquet_read_the_same(tmp_path):
    plain = read_interactions(write(tmp_path, GOOD)).frame
    gz = tmp_path / "i.csv.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(GOOD)
    pd.testing.assert_frame_equal(read_interactions(str(gz)).frame, plain)
    pq = tmp_path / "i.parquet"
    pd.read_csv(write(tmp_path, GOOD), dtype={"USER_ID": str, "ITEM_ID": str}).to_parquet(pq)
    got = read_interactions(str(pq)).frame
    assert got["USER_ID"].tolist() == ["u1", "u2"] and got["TIMESTAMP"].tolist() == [1700000000, 1700000100]


@pytest.mark.parametrize("text, where", [
    ("USER_ID,ITEM_ID\nu1,i1\n", "line 1: column TIMESTAMP: missing required column"),
    ("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,5\nu2,i2,yesterday\n", "line 3: column TIMESTAMP: cannot parse 'yesterday'"),
    ("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,5\nu2,,6\n", "line 3: column ITEM_ID: empty ID"),
    ("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,5\nu2,i2,\n", "line 3: column TIMESTAMP: missing value"),
    ("USER_ID,ITEM_ID,TIMESTAMP,EVENT_VALUE\nu1,i1,5,x\n", "line 2: column EVENT_VALUE: cannot parse 'x'"),
    ("USER_ID,ITEM_ID,TIMESTAMP\n" + "u," * 0 + "u1," + "x" * 257 + ",5\n", "line 2: column ITEM_ID: ID of 257 characters"),
    ("USER_ID,user_id,ITEM_ID,TIMESTAMP\nu1,u1,i1,5\n", "appears twice"),
])
def test_malformed_interactions(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as exc:
        read_interactions(path)
    assert path in str(exc.value) and where in str(exc.value)


def test_id_of_256_characters_is_fine(tmp_path):
    ds = read_interactions(write(tmp_path, "USER_ID,ITEM_ID,TIMESTAMP\nu1," + "x" * 256 + ",5\n"))
    assert len(ds.frame["ITEM_ID"].iloc[0]) == 256


def test_not_utf8(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"USER_ID,ITEM_ID,TIMESTAMP\nu\xff\xfe,i1,5\n")
    with pytest.raises(ValueError, match="bad.csv"):
        read_interactions(str(path))


def test_items_and_users(tmp_path):
    items = read_items(write(tmp_path, "ITEM_ID,GENRE,PRICE,CREATION_TIMESTAMP\na,Comedy|Drama,1.5,10\nb,Action,2,20\n", "items.csv"))
    assert items.types == {"ITEM_ID": "string", "GENRE": "categorical", "PRICE": "float",
                           "CREATION_TIMESTAMP": "long"}
    with pytest.raises(ValueError, match=r"items2.csv: line 3: column ITEM_ID: ITEM_ID 'a' appears twice"):
        read_items(write(tmp_path, "ITEM_ID,GENRE\na,x\na,y\n", "items2.csv"))
    with pytest.raises(ValueError, match="missing required column USER_ID"):
        read_users(write(tmp_path, "ID,AGE\na,3\n", "users.csv"))


def test_schema_fixes_types(tmp_path):
    schema = {"type": "record", "name": "Items", "namespace": "com.amazonaws.personalize.schema",
              "fields": [{"name": "ITEM_ID", "type": "string"},
                         {"name": "YEAR", "type": "string", "categorical": True},
                         {"name": "SCORE", "type": ["null", "double"]}], "version": "1.0"}
    path = write(tmp_path, "ITEM_ID,YEAR,SCORE\na,1999,\nb,2001,2.5\n", "items.csv")
    ds = read_items(path, json.dumps(schema))
    assert not ds.inferred and ds.types["YEAR"] == "categorical"
    assert ds.frame["YEAR"].tolist() == ["1999", "2001"]  # kept as strings, not numbers
    assert np.isnan(ds.frame["SCORE"].iloc[0]) and ds.frame["SCORE"].iloc[1] == 2.5
    assert load_schema(schema) == {"ITEM_ID": "string", "YEAR": "categorical", "SCORE": "float"}
    wrong = dict(schema, fields=schema["fields"][:2])
    with pytest.raises(ValueError, match="not in the schema"):
        read_items(path, wrong)
    with pytest.raises(ValueError, match="unsupported type"):
        load_schema({"fields": [{"name": "X", "type": "map"}]})


def test_synthetic_dataset_reads_back(tmp_path):
    paths = synthetic_interactions(tmp_path / "d", n_users=30, n_items=40, seed=3, compress=True)
    inter = read_interactions(paths["interactions"])
    items = read_items(paths["items"])
    users = read_users(paths["users"])
    assert len(users) == 30 and len(items) == 40 and len(inter) >= 90
    assert set(inter.frame["ITEM_ID"]) <= set(items.frame["ITEM_ID"])
    assert set(inter.frame["EVENT_TYPE"]) <= {"click", "watch", "purchase"}
    ts = inter.frame.groupby("USER_ID")["TIMESTAMP"].apply(lambda s: bool((s.diff().dropna() > 0).all()))
    assert ts.all()
    again = synthetic_interactions(tmp_path / "e", n_users=30, n_items=40, seed=3, compress=True)
    assert read_interactions(again["interactions"]).checksum != "" and \
        read_interactions(again["interactions"]).frame.equals(inter.frame)
