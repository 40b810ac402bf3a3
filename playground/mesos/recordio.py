"""RecordIO framing exactly as Mesos streams it: ``<decimal length>\\n<bytes>``.

The grammar (``docs/recordio.md``) is::

    records      = *record
    record       = record-size LF record-data
    record-size  = 1*DIGIT            ; an unsigned 64-bit integer
    record-data  = record-size(OCTET)

There is no magic header, no padding, no compression and no separator after the data:
the next record's length follows the previous record's last byte immediately. HTTP
chunk boundaries (and proxies) may cut the stream anywhere, so :class:`Decoder` is
incremental: it keeps whatever it cannot complete yet and returns whole records only.
Like the ``recordio::Decoder`` of Mesos (stout), it enters a failed state on the first
malformed length and refuses all further input.
"""

from __future__ import annotations

__all__ = ["MAX_RECORD_SIZE", "Decoder", "RecordIOError", "encode"]

#: ``record-size`` is an unsigned 64-bit integer.
MAX_RECORD_SIZE = 2**64 - 1
#: Number of decimal digits of :data:`MAX_RECORD_SIZE`; a longer prefix cannot be valid.
_MAX_PREFIX_DIGITS = len(str(MAX_RECORD_SIZE))
_DIGITS = frozenset(b"0123456789")


class RecordIOError(ValueError):
    """A RecordIO stream is malformed (its length prefix is not ``1*DIGIT`` in uint64).

    Attributes:
        records: The complete records decoded from the same :meth:`Decoder.feed` call before
            the malformed prefix was found; they are valid and may still be processed.
    """

    def __init__(self, message: str, records: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.records: list[bytes] = records if records is not None else []


def encode(record: bytes | bytearray | memoryview) -> bytes:
    """Frame one record the way the Mesos master frames events.

    Args:
        record: The record's payload (e.g. a JSON-encoded event); may be empty.

    Returns:
        ``b"<len(record)>\\n" + record``.
    """
    data = bytes(record)
    return b"%d\n" % len(data) + data


class Decoder:
    """Incremental RecordIO decoder that tolerates arbitrary chunk boundaries.

    Example:
        >>> d = Decoder()
        >>> d.feed(b"5\\nhel")
        []
        >>> d.feed(b"lo2\\nok")
        [b'hello', b'ok']
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._length: int | None = None  # size of the record being read, once its prefix is known
        self._failure: RecordIOError | None = None

    @property
    def failed(self) -> bool:
        """Whether a malformed prefix was seen (the decoder then refuses all input)."""
        return self._failure is not None

    @property
    def pending(self) -> int:
        """Bytes buffered for an incomplete record or prefix (non-zero at EOF = truncated)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Consume the next piece of the stream.

        Args:
            data: Any number of bytes, cut anywhere in the stream (may be empty).

        Returns:
            The records completed by ``data``, in stream order (possibly none).

        Raises:
            RecordIOError: The stream has a malformed length prefix (non-digit characters,
                an empty prefix, or a value beyond uint64), or the decoder already failed.
                Records completed before the bad prefix are in the exception's ``records``.
        """
        if self._failure is not None:
            raise RecordIOError(f"RecordIO decoder is in a failed state: {self._failure}")
        buffer = self._buffer
        buffer += data
        records: list[bytes] = []
        pos = 0
        try:
            while True:
                if self._length is None:
                    newline = buffer.find(b"\n", pos)
                    if newline < 0:
                        self._check_partial_prefix(buffer, pos, records)
                        break
                    self._length = self._parse_prefix(bytes(buffer[pos:newline]), records)
                    pos = newline + 1
                if len(buffer) - pos < self._length:
                    break
                end = pos + self._length
                records.append(bytes(buffer[pos:end]))
                pos = end
                self._length = None
        finally:
            del buffer[:pos]
        return records

    def _fail(self, message: str, records: list[bytes]) -> RecordIOError:
        self._failure = RecordIOError(message)
        self._buffer.clear()
        self._length = None
        return RecordIOError(message, records)

    def _check_partial_prefix(self, buffer: bytearray, pos: int, records: list[bytes]) -> None:
        """Fail early on a prefix that can never become valid, whatever bytes follow."""
        partial = bytes(buffer[pos:])
        if any(byte not in _DIGITS for byte in partial):
            raise self._fail(
                f"Failed to decode length {partial[:40]!r}: not a decimal number", records
            )
        if len(partial) > _MAX_PREFIX_DIGITS:
            raise self._fail(f"Failed to decode length {partial[:40]!r}: exceeds uint64", records)

    def _parse_prefix(self, prefix: bytes, records: list[bytes]) -> int:
        if not prefix or any(byte not in _DIGITS for byte in prefix):
            raise self._fail(
                f"Failed to decode length {prefix[:40]!r}: not a decimal number", records
            )
        length = int(prefix)
        if length > MAX_RECORD_SIZE:
            raise self._fail(f"Failed to decode length {prefix[:40]!r}: exceeds uint64", records)
        return length
