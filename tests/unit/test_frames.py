"""The relay's hand-built Basic.Publish frames read back as py-amqp (our consumers) reads them."""

from __future__ import annotations

from struct import unpack_from
from typing import Any

import pytest
from amqp.serialization import decode_properties_basic, loads

from shared.frames import Outgoing, publish_frames, shortstr

MESSAGE = Outgoing(
    routing_key="identification.pupil_flagged_at_risk",
    body='{"payload":{"school_id":"daugavpils-10-vsk","note":"Bērziņa ģ ž"}}'.encode(),
    message_id="6f1c1f9e-4a4b-5c56-9d2e-8a0c3b1d2e3f",
    type="pupil_flagged_at_risk",
    timestamp=1_570_000_000,
    headers={"source": "identification", "notification_id": 2**40 + 7},
)


def split_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    frames, offset = [], 0
    while offset < len(data):
        kind, channel, size = unpack_from(">BHI", data, offset)
        payload = data[offset + 7 : offset + 7 + size]
        assert data[offset + 7 + size] == 0xCE, "every frame ends with the frame-end octet"
        frames.append((kind, channel, payload))
        offset += 8 + size
    return frames


def read_back(data: bytes) -> dict[str, Any]:
    frames = split_frames(data)
    (method_kind, channel, method), (header_kind, _, header), *bodies = frames
    assert (method_kind, header_kind) == (1, 2)
    assert unpack_from(">HH", method) == (60, 40), "Basic.Publish"
    (_, exchange, key, mandatory, immediate), _ = loads("Bssbb", method, 4)
    class_id, _weight, body_size = unpack_from(">HHQ", header)
    properties, _ = decode_properties_basic(header, 12)
    body = b"".join(payload for kind, _, payload in bodies if kind == 3)
    assert class_id == 60 and body_size == len(body)
    return {
        "channel": channel,
        "exchange": exchange,
        "routing_key": key,
        "mandatory": mandatory,
        "immediate": immediate,
        "properties": properties,
        "body": body,
        "body_frames": len(bodies),
    }


def test_a_message_reads_back_with_every_property() -> None:
    seen = read_back(publish_frames(3, 131072, "pumpurs.events", MESSAGE))
    assert seen["channel"] == 3
    assert seen["exchange"] == "pumpurs.events"
    assert seen["routing_key"] == MESSAGE.routing_key
    assert not seen["mandatory"] and not seen["immediate"]
    assert seen["body"] == MESSAGE.body and seen["body_frames"] == 1
    properties = dict(seen["properties"])
    stamped = properties.pop("timestamp")
    assert properties == {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "application_headers": MESSAGE.headers,
        "delivery_mode": 2,
        "message_id": MESSAGE.message_id,
        "type": MESSAGE.type,
    }
    assert stamped == MESSAGE.timestamp


def test_a_body_larger_than_a_frame_is_split_and_reassembled() -> None:
    big = Outgoing(**{**MESSAGE.__dict__, "body": b"x" * 10_000})
    seen = read_back(publish_frames(1, 4096, "pumpurs.events", big))
    assert seen["body"] == big.body
    assert seen["body_frames"] == 3  # 4088 + 4088 + 1824 bytes


def test_an_overlong_short_string_is_refused_not_truncated() -> None:
    with pytest.raises(ValueError, match="255"):
        shortstr("k" * 256)
