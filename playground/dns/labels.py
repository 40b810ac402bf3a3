"""DNS label rules of mesos-dns: how task and framework names become host name labels.

mesos-dns maps every character to a label character (letters lowered, ``-``, ``.`` and
``_`` to ``-``, anything else dropped), trims leading and trailing dashes and cuts the
label at 63 characters (RFC 1123, the default) or 24 characters that must start with a
letter (RFC 952, ``enforceRFC952``). Framework names keep their dots: each dot-separated
part is a label of its own. A task's id is hashed to five zbase32 characters, the
``-xxxxx-`` part of its canonical name.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

#: zbase32's alphabet (human-oriented base 32, http://philzimmermann.com/docs/human-oriented-base-32-encoding.txt).
ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"

LabelFunc = Callable[[str], str]


def _mapping(ch: str) -> str:
    if "A" <= ch <= "Z":
        return ch.lower()
    if "a" <= ch <= "z" or "0" <= ch <= "9":
        return ch
    if ch in "-._":
        return "-"
    return ""


#: The mapping of every ASCII character (others are dropped), for ``str.translate``.
_TABLE = {i: _mapping(chr(i)) or None for i in range(128)}


def _trim_cut(label: str, maxlen: int, left: str, right: str) -> str:
    """Cut ``label`` at ``maxlen``, trimming the ``left`` and ``right`` cutsets at its ends.

    As mesos-dns does: dashes trimmed off the right end of the cut are replaced by the
    characters that follow the cut (skipping dashes), so a label is not shortened by them.
    """
    trim = label.lstrip(left)
    size = min(len(trim), maxlen)
    head = trim[:size].rstrip(right)
    if len(head) == size:
        return head
    tail = trim[size:].lstrip(right)
    if tail:
        return head + tail[: min(len(tail), size - len(head))]
    return head


@functools.lru_cache(maxsize=8192)
def _label(name: str, maxlen: int, left: str, right: str) -> str:
    # Names repeat across refreshes and tasks (every instance of an app): cached.
    ascii_only = name.encode("ascii", "ignore").decode()
    return _trim_cut(ascii_only.translate(_TABLE), maxlen, left, right)


def rfc1123(name: str) -> str:
    """A label of at most 63 characters (mesos-dns's default, ``enforceRFC952`` false)."""
    return _label(name, 63, "-", "-")


def rfc952(name: str) -> str:
    """A label of at most 24 characters starting with a letter (``enforceRFC952`` true)."""
    return _label(name, 24, "-0123456789", "-")


def spec(enforce_rfc952: bool) -> LabelFunc:
    """The label function a configuration asks for."""
    return rfc952 if enforce_rfc952 else rfc1123


def domain_frag(name: str, label: LabelFunc, sep: str = ".") -> str:
    """A domain fragment: every ``sep``-separated part made a label, empty parts dropped."""
    return sep.join(lab for lab in (label(part) for part in name.split(sep)) if lab)


def zbase32(data: bytes) -> str:
    """zbase32 encoding of ``data`` (5 bits a character, most significant bits first)."""
    bits = int.from_bytes(data, "big")
    nbits = len(data) * 8
    chars = (nbits + 4) // 5
    bits <<= chars * 5 - nbits  # pad the last group with zero bits
    return "".join(ZBASE32[(bits >> (5 * (chars - 1 - i))) & 31] for i in range(chars))


def hash_string(s: str) -> str:
    """The five characters mesos-dns derives from a task id (truncated SHA-1, zbase32)."""
    # The first five characters are the first 25 bits of the digest.
    bits = int.from_bytes(hashlib.sha1(s.encode()).digest()[:4], "big") >> 7
    return "".join(ZBASE32[(bits >> shift) & 31] for shift in (20, 15, 10, 5, 0))


def slave_id_tail(slave_id: str) -> str:
    """The last dash-separated part of an agent id, lowered (``...-S1`` -> ``s1``)."""
    return slave_id.split("-")[-1].lower()
