"""RecordIO framing: Mesos' ``<decimal length>\\n<bytes>`` records, cut anywhere."""

from __future__ import annotations

import json

import pytest

from playground.mesos.recordio import MAX_RECORD_SIZE, Decoder, RecordIOError, encode

SUBSCRIBED = json.dumps(
    {
        "type": "SUBSCRIBED",
        "subscribed": {
            "framework_id": {"value": "12220-3440-12532-2345"},
            "heartbeat_interval_seconds": 15.0,
        },
    }
).encode()
HEARTBEAT = b'{"type":"HEARTBEAT"}'
RECORDS = [SUBSCRIBED, HEARTBEAT, b"", "caf\u00e9 \u2603".encode(), b"12\n34", HEARTBEAT]
STREAM = b"".join(encode(r) for r in RECORDS)


def test_encode_prefixes_the_decimal_byte_length_and_a_newline() -> None:
    """encode() writes the byte (not character) length in decimal, a LF, then the data verbatim."""
    assert encode(HEARTBEAT) == b"20\n" + HEARTBEAT
    assert encode("\u00e9".encode()) == b"2\n\xc3\xa9"
    assert encode(b"") == b"0\n"
    assert encode(bytearray(b"ab")) == b"2\nab"


def test_decodes_a_whole_stream_in_one_chunk() -> None:
    """A stream fed at once yields every record in order and leaves nothing pending."""
    decoder = Decoder()
    assert decoder.feed(STREAM) == RECORDS
    assert decoder.pending == 0


def test_every_split_point_of_a_multi_record_stream() -> None:
    """Cutting the stream into two chunks at any byte offset yields the same records."""
    for cut in range(len(STREAM) + 1):
        decoder = Decoder()
        records = decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:])
        assert records == RECORDS, f"split at {cut}"
        assert decoder.pending == 0


def test_every_pair_of_split_points() -> None:
    """Cutting the stream into three chunks at any two offsets yields the same records."""
    stream = b"".join(encode(r) for r in (b"abc", b"", b"0123456789", b"\n"))
    expected = [b"abc", b"", b"0123456789", b"\n"]
    for first in range(len(stream) + 1):
        for second in range(first, len(stream) + 1):
            decoder = Decoder()
            chunks = (stream[:first], stream[first:second], stream[second:])
            records = [r for chunk in chunks for r in decoder.feed(chunk)]
            assert records == expected, f"split at {first}, {second}"


def test_byte_by_byte_feeding_returns_each_record_when_its_last_byte_arrives() -> None:
    """Feeding one byte at a time returns each record exactly when it completes."""
    decoder = Decoder()
    completed_at: list[int] = []
    records: list[bytes] = []
    for i in range(len(STREAM)):
        got = decoder.feed(STREAM[i : i + 1])
        completed_at.extend([i] * len(got))
        records.extend(got)
    assert records == RECORDS
    ends = []
    offset = 0
    for record in RECORDS:
        offset += len(encode(record))
        ends.append(offset - 1)
    assert completed_at == ends


def test_incomplete_record_is_kept_pending() -> None:
    """A prefix or a partial payload yields nothing and is reported as pending bytes."""
    decoder = Decoder()
    assert decoder.feed(b"1") == []
    assert decoder.feed(b"0\nabc") == []
    assert decoder.pending == 3
    assert decoder.feed(b"defghij") == [b"abcdefghij"]
    assert decoder.pending == 0
    assert decoder.feed(b"") == []


def test_empty_record() -> None:
    """A zero length prefix is an empty record, alone or between others."""
    decoder = Decoder()
    assert decoder.feed(b"0\n") == [b""]
    assert decoder.feed(b"0\n0\n1\nx0\n") == [b"", b"", b"x", b""]


def test_large_record_in_small_chunks() -> None:
    """A multi-megabyte record survives being fed in 4 KiB chunks, with neighbours intact."""
    big = bytes(range(256)) * 16384  # 4 MiB, every byte value including LF and digits
    stream = encode(b"first") + encode(big) + encode(b"last")
    decoder = Decoder()
    records: list[bytes] = []
    for i in range(0, len(stream), 4096):
        records.extend(decoder.feed(stream[i : i + 4096]))
    assert len(records) == 3
    assert records[0] == b"first"
    assert records[1] == big
    assert records[2] == b"last"


@pytest.mark.parametrize(
    "garbage",
    [
        b"abc\n",  # not a number
        b"HTTP/1.1 200 OK\r\n",  # a non-RecordIO body
        b"12\r\n",  # CRLF is not the separator
        b" 12\n",  # whitespace is not a digit
        b"-1\n",  # negative
        b"+1\n",  # a sign is not a digit
        b"0x10\n",  # hexadecimal
        b"\n",  # empty prefix
        b'{"type":"HEARTBEAT"}',  # JSON without a prefix
    ],
)
def test_garbage_prefix_raises(garbage: bytes) -> None:
    """A length prefix that is not 1*DIGIT raises RecordIOError, a ValueError."""
    decoder = Decoder()
    with pytest.raises(RecordIOError, match="Failed to decode length") as info:
        decoder.feed(garbage)
    assert isinstance(info.value, ValueError)
    assert decoder.failed


def test_garbage_is_detected_before_the_newline_arrives() -> None:
    """A non-digit fails at once instead of buffering until a LF that may never come."""
    decoder = Decoder()
    assert decoder.feed(b"12") == []
    with pytest.raises(RecordIOError):
        decoder.feed(b"x" * 100)


def test_prefix_beyond_uint64_raises() -> None:
    """A length that does not fit an unsigned 64-bit integer is malformed."""
    with pytest.raises(RecordIOError, match="uint64"):
        Decoder().feed(b"%d\n" % (MAX_RECORD_SIZE + 1))
    with pytest.raises(RecordIOError, match="uint64"):
        Decoder().feed(b"1" * 21)  # too many digits, even without the LF


def test_records_before_the_garbage_are_attached_to_the_error() -> None:
    """The valid records decoded in the failing feed are available on the exception."""
    decoder = Decoder()
    with pytest.raises(RecordIOError) as info:
        decoder.feed(encode(b"one") + encode(b"two") + b"oops\n")
    assert info.value.records == [b"one", b"two"]


def test_decoder_stays_failed_after_garbage() -> None:
    """After a malformed prefix the decoder refuses even well-formed input."""
    decoder = Decoder()
    with pytest.raises(RecordIOError):
        decoder.feed(b"x\n")
    with pytest.raises(RecordIOError, match="failed state"):
        decoder.feed(encode(b"fine"))
