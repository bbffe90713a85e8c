"""WebSocket frames around a shared subscription payload.

Every subscriber of an event with the same operation, variables, organization and role gets
the same answer object (``schema.shared_results``); only the frame's ``id`` (and, for the
legacy protocol, the key order) differs per socket. So the ``{"data": ...}`` payload is
serialised once, by the answer itself, and each socket's frame is its envelope written around
those bytes — byte for byte what serialising the whole frame would give. The envelope of a
subscription's frames is the same for every event, so the express path (``schema.express``)
works it out once per subscription with the same function the encoder uses.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from schema.shared_results import SharedData

_KEYS = {key: f'"{key}":' for key in ("id", "type", "payload")}  # every frame has these


def envelope(message: Mapping[str, object]) -> tuple[str, str]:
    """What ``message`` serialises to before and after its ``payload`` value (which must be
    one of its keys): the frame is ``before + payload_json + after``."""
    before: list[str] = []
    after: list[str] = []
    parts = before
    for key, value in message.items():
        name = _KEYS.get(key) or f"{orjson.dumps(key).decode()}:"
        if key == "payload":
            before.append(name)
            parts = after
            continue
        parts.append(name + orjson.dumps(value).decode())
    if parts is before:
        raise ValueError("a frame envelope needs a payload key")
    return "{" + ",".join(before), "".join("," + part for part in after) + "}"


def spliced_frame(message: Mapping[str, object]) -> str | None:
    """The frame for ``message`` if its payload is exactly one shared answer, else None.

    Both protocols qualify: graphql-transport-ws ``next`` and legacy graphql-ws ``data``
    messages carry ``{"data": ...}`` alone when there are no errors or extensions.
    """
    payload = message.get("payload")
    if not isinstance(payload, dict) or len(payload) != 1:
        return None
    data = payload.get("data")
    if not isinstance(data, SharedData):
        return None
    head, tail = envelope(message)
    return head + data.payload_json + tail
