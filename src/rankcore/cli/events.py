"""``rankcore events export``: an event store's events as a Personalize Interactions CSV.

The CSV (``USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE`` and ``EVENT_VALUE`` when any event has one)
is what ``rankcore train --interactions`` reads, so recorded events feed the next model.
"""
from __future__ import annotations

import argparse
import os

from .args import CommandError

__all__ = ["configure_events_parser", "cmd_events_export"]


def cmd_events_export(args) -> int:
    from ..personalize.event_store import EventStore  # lazy: only this command opens a store
    if not os.path.exists(args.store):
        raise CommandError(f"no event store at {args.store}")
    with EventStore(args.store) as store:
        n = store.export_interactions_csv(args.out, tracking_id=args.tracking_id)
    print(f"wrote {n} interactions to {args.out}")
    return 0


def configure_events_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="events_command", metavar="COMMAND")
    sub.required = True
    e = sub.add_parser("export", help="write the stored events as a Personalize Interactions CSV",
                       description="Write the events of an event store (rankcore serve --event-store) "
                                   "as an Interactions CSV that 'rankcore train --interactions' reads.")
    e.add_argument("--store", required=True, metavar="PATH", help="the event store file")
    e.add_argument("--out", required=True, metavar="CSV", help="the CSV to write (replaced whole)")
    e.add_argument("--tracking-id", default=None, metavar="ID", help="only the events of this tracking ID")
    e.set_defaults(func=cmd_events_export)
