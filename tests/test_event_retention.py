"""The server's event store grows without bound only if asked (issue 14): retention and compaction.

``rankcore serve --event-store PATH --event-retention-rows N`` (or ``--event-retention-days``)
compacts the store every ``--event-compact-interval`` seconds, the first time at start-up.
"""
import argparse

from rankcore.cli.serving import configure_serve_parser
from rankcore.serve.config import settings_from_args
from rankcore.serve.events import open_feed


def _settings(*argv):
    parser = argparse.ArgumentParser()
    configure_serve_parser(parser)
    return settings_from_args(parser.parse_args(["--campaign", "c=/nonexistent", *argv]))


def _events(n, start=0):
    return [{"eventType": "click", "itemId": str(i), "sentAt": 1767225600 + i} for i in range(start, start + n)]


def test_retention_flags_reach_the_store_and_compaction_applies_them(tmp_path):
    s = _settings("--event-store", str(tmp_path / "ev.db"), "--event-retention-rows", "5",
                  "--event-compact-interval", "60")
    assert s["event_retention_rows"] == 5 and s["event_compact_interval"] == 60
    feed = open_feed(s)
    try:
        store = feed.store
        for k in range(3):
            store.put_events("t", "u1", "s1", _events(4, 4 * k))
        assert store.counts()["events"] == 12
        assert feed.maybe_compact(now=1000.0) == {"events": 7, "items": 0, "users": 0}
        assert store.counts()["events"] == 5
        store.put_events("t", "u1", "s1", _events(4, 100))
        assert feed.maybe_compact(now=1030.0) is None  # the interval has not passed
        assert store.counts()["events"] == 9
        assert feed.maybe_compact(now=1061.0)["events"] == 4
        kept = [r.item_id for r in store.replay() if r.kind == "event"]
        assert kept == ["11", "100", "101", "102", "103"]
    finally:
        feed.close()


def test_without_retention_nothing_is_dropped(tmp_path):
    feed = open_feed(_settings("--event-store", str(tmp_path / "ev.db")))
    try:
        feed.store.put_events("t", None, "s1", _events(6))
        feed.maybe_compact(now=0.0)
        assert feed.store.counts()["events"] == 6
    finally:
        feed.close()
