"""Names and identifiers of the Personalize layer: ARNs, resource names, request and recommendation IDs.

``new_uuid`` draws random version-4 UUIDs (request IDs), ``new_recommendation_id`` makes the
``RID-<uuid4>`` of every ranking, ``campaign_arn``/``filter_arn`` build ARNs in a region and
account (``DEFAULT_REGION``, ``DEFAULT_ACCOUNT`` by default) and ``check_name`` enforces the
service's resource-name rule. The formats are those of docs/personalize.md.
"""
from __future__ import annotations

import random
import re

__all__ = ["DEFAULT_REGION", "DEFAULT_ACCOUNT", "new_uuid", "new_recommendation_id",
           "campaign_arn", "filter_arn", "check_name"]

#: Defaults for ARNs (the account is LocalStack's conventional dummy account).
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "000000000000"

_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_]{0,62}")
_UUID4_CLEAR = ~(0xF000 << 64 | 0xC000 << 48) & ((1 << 128) - 1)
_UUID4_SET = 0x4000 << 64 | 0x8000 << 48


def new_uuid() -> str:
    """A random (version 4) UUID string, cheaper than ``str(uuid.uuid4())``.

    Drawn from the ``random`` module's global generator, which is seeded from the OS and
    reseeded in forked children, so server workers never repeat each other's IDs.
    """
    h = "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_recommendation_id() -> str:
    """``RID-<uuid4>``, new for every call."""
    return "RID-" + new_uuid()


def check_name(name, what: str) -> str:
    """``name`` if it is a valid resource name (1-63 of ``[a-zA-Z0-9-_]``, starting alphanumeric).

    Raises ``ValueError`` naming ``what`` (e.g. "campaign name") otherwise.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"{what} {name!r} must be 1-63 characters of [a-zA-Z0-9-_] "
                         "starting with a letter or digit")
    return name


def campaign_arn(name: str, region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT) -> str:
    """``arn:aws:personalize:<region>:<account>:campaign/<name>``."""
    return f"arn:aws:personalize:{region}:{account}:campaign/{name}"


def filter_arn(name: str, region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT) -> str:
    """``arn:aws:personalize:<region>:<account>:filter/<name>``."""
    return f"arn:aws:personalize:{region}:{account}:filter/{name}"
