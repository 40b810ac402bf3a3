"""Lab data for the ``kv`` workload: Faker customer records with a manifest that travels with them.

``generate(n, seed)`` makes ``n`` customer records (id, name, email, address, phone,
company, created_at...), the same ones for the same seed. ``load(base_url, records)``
writes them into a running ``kv`` service (``PUT /v1/kv/{key}``, a few requests in
flight at a time), then writes the manifest: the key ``_manifest.<prefix>``, a JSON
document listing every record's key with the SHA-256 of its value and an overall
checksum. ``verify(base_url, prefix)`` reads the manifest back from the same ``kv`` and
checks every record it lists is present and unchanged.

Because the manifest is stored with the records, ``verify`` works on whatever holds the
data afterwards: a snapshot, a clone, a restore, a replica promoted after a crash.

The overall checksum is the SHA-256 of the lines ``<key> <sha256 of value>\\n`` in key
order, so it depends on the content only, never on the order of the writes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from playground.errors import PlaygroundError

#: The manifest of prefix ``P`` is stored under ``_manifest.P``.
MANIFEST_PREFIX = "_manifest."
MANIFEST_SCHEMA = 1
MANIFEST_KIND = "playground.dataset"
DEFAULT_PREFIX = "customers"
DEFAULT_CONCURRENCY = 8
#: A prefix is used in keys (``<prefix>-000001``), so it is a key without ``-``'s trouble.
PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~]{0,63}$")
#: created_at values fall in this window, fixed so that a seed always gives the same data.
CREATED_FROM = dt.datetime(2019, 1, 1, tzinfo=dt.UTC)
CREATED_TO = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

Progress = Callable[[int, int], None]


class DatasetError(PlaygroundError):
    """Loading or verifying lab data failed (the message says which key and why)."""


@dataclass(frozen=True)
class Record:
    """One generated record: its ``kv`` key and the exact bytes stored as its value."""

    key: str
    value: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.value).hexdigest()


@dataclass
class LoadResult:
    """What ``load`` wrote.

    Attributes:
        prefix: the data set's prefix.
        count: records written (every one acknowledged with a 2xx).
        checksum: the overall checksum stored in the manifest.
        manifest_key: where the manifest is.
        seconds: how long the writes took.
        durable: whether the kv fsyncs every write before acknowledging it (``/stats``).
    """

    prefix: str
    count: int
    checksum: str
    manifest_key: str
    seconds: float
    durable: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "count": self.count,
            "checksum": self.checksum,
            "manifest": self.manifest_key,
            "seconds": round(self.seconds, 3),
            "durable": self.durable,
        }


@dataclass
class VerifyResult:
    """What ``verify`` found.

    Attributes:
        prefix: the data set's prefix.
        manifest_key: where the manifest is.
        count: records the manifest lists.
        checksum: the overall checksum recomputed from the data read back (equal to
            ``expected_checksum`` when nothing is missing or changed).
        expected_checksum: the overall checksum the manifest records.
        missing: keys the manifest lists that the ``kv`` does not have, sorted.
        changed: keys whose value's SHA-256 differs from the manifest's, sorted.
    """

    prefix: str
    manifest_key: str
    count: int
    checksum: str
    expected_checksum: str
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.changed and self.checksum == self.expected_checksum

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "prefix": self.prefix,
            "manifest": self.manifest_key,
            "count": self.count,
            "present": self.count - len(self.missing),
            "checksum": self.checksum,
            "expected_checksum": self.expected_checksum,
            "missing": self.missing,
            "changed": self.changed,
        }


# ---- generation -----------------------------------------------------------------------
def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can name a data set, else raise :class:`DatasetError`."""
    if not PREFIX_PATTERN.match(prefix):
        raise DatasetError(
            f"invalid prefix {prefix!r}",
            hint="a prefix is 1 to 64 characters from A-Z a-z 0-9 '.' '_' '~', "
            "starting with a letter or digit (e.g. customers)",
        )
    return prefix


def manifest_key(prefix: str = DEFAULT_PREFIX) -> str:
    """The key of the manifest of the data set ``prefix``."""
    return MANIFEST_PREFIX + check_prefix(prefix)


def record_key(prefix: str, index: int) -> str:
    """The key of record number ``index`` (from 1): ``customers-000001``."""
    return f"{prefix}-{index:06d}"


def encode(doc: Mapping[str, Any]) -> bytes:
    """The canonical JSON bytes of a record (sorted keys, no spaces, UTF-8)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def generate(n: int, seed: int = 0, prefix: str = DEFAULT_PREFIX) -> list[Record]:
    """Generate ``n`` customer records, identical for the same ``seed`` (and Faker version).

    Args:
        n: how many records (>= 0).
        seed: the random seed.
        prefix: the data set's prefix; record keys are ``<prefix>-000001``...

    Returns:
        The records in key order; each value is a JSON object with ``id``, ``name``,
        ``email``, ``phone``, ``company``, ``job``, ``address`` (street, city, state,
        postcode, country), ``iban``, ``credit_limit``, ``active`` and ``created_at``.

    Raises:
        DatasetError: ``n`` is negative or the prefix is invalid.
    """
    from faker import Faker  # imported here: Faker takes a while to import

    check_prefix(prefix)
    if n < 0:
        raise DatasetError(f"cannot generate {n} records", hint="give a count >= 0")
    fake = Faker("en_US")
    fake.seed_instance(seed)
    out: list[Record] = []
    for i in range(1, n + 1):
        key = record_key(prefix, i)
        created = fake.date_time_between_dates(CREATED_FROM, CREATED_TO, tzinfo=dt.UTC)
        doc = {
            "id": key,
            "customer_no": i,
            "uuid": fake.uuid4(),
            "name": fake.name(),
            "email": fake.email(),
            "phone": fake.phone_number(),
            "company": fake.company(),
            "job": fake.job(),
            "address": {
                "street": fake.street_address(),
                "city": fake.city(),
                "state": fake.state_abbr(),
                "postcode": fake.postcode(),
                "country": "US",
            },
            "iban": fake.iban(),
            "credit_limit": fake.pyint(min_value=500, max_value=50_000, step=500),
            "active": fake.pybool(),
            "created_at": created.isoformat(timespec="seconds"),
        }
        out.append(Record(key, encode(doc)))
    return out


def overall_checksum(digests: Mapping[str, str]) -> str:
    """The SHA-256 of ``<key> <digest>\\n`` lines in key order."""
    h = hashlib.sha256()
    for key in sorted(digests):
        h.update(f"{key} {digests[key]}\n".encode())
    return h.hexdigest()


def build_manifest(prefix: str, records: Sequence[Record], seed: int | None = None) -> bytes:
    """The manifest document (JSON bytes) listing ``records``."""
    from faker import VERSION as FAKER_VERSION

    digests = {r.key: r.sha256 for r in records}
    doc = {
        "schema_version": MANIFEST_SCHEMA,
        "kind": MANIFEST_KIND,
        "prefix": prefix,
        "seed": seed,
        "generator": f"faker {FAKER_VERSION}",
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "count": len(digests),
        "checksum": overall_checksum(digests),
        "records": digests,
    }
    return encode(doc)


# ---- HTTP -------------------------------------------------------------------------------
def _message(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text.strip()[:300] or r.reason_phrase
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(body)[:300]


def _url(base_url: str, key: str) -> str:
    return f"{base_url.rstrip('/')}/v1/kv/{quote(key, safe='')}"


def _unreachable(base_url: str, exc: Exception) -> DatasetError:
    return DatasetError(
        f"cannot reach the kv service at {base_url}: {exc or type(exc).__name__}",
        hint="is the app's task running and serving `playground workload kv`? "
        "see `playground app show APP_ID`",
    )


def check_kv(client: httpx.Client, base_url: str, ready_timeout: float = 0.0) -> dict[str, Any]:
    """``GET /stats`` of a ``kv`` service; a :class:`DatasetError` if it is not one.

    A service that refuses connections is asked again for up to ``ready_timeout``
    seconds (a task that has just started may not listen yet).
    """
    deadline = time.monotonic() + ready_timeout
    while True:
        try:
            r = client.get(f"{base_url.rstrip('/')}/stats")
            break
        except httpx.TransportError as exc:
            if time.monotonic() >= deadline:
                raise _unreachable(base_url, exc) from None
            time.sleep(0.2)
        except httpx.HTTPError as exc:
            raise _unreachable(base_url, exc) from None
    try:
        stats = r.json() if r.status_code == 200 else None
    except ValueError:
        stats = None
    if not isinstance(stats, dict) or "checksum" not in stats or "records" not in stats:
        raise DatasetError(
            f"the service at {base_url} is not a kv workload "
            f"(GET /stats answered HTTP {r.status_code})",
            hint="data load and verify work with apps whose cmd is "
            "`playground workload kv --data data --durable`",
        )
    return stats


def _refusal(r: httpx.Response, what: str) -> DatasetError:
    """The error for a write the kv did not acknowledge (a full volume says so)."""
    if r.status_code == 507:
        return DatasetError(
            f"the kv's volume is full: {what} was refused (HTTP 507: {_message(r)})",
            hint="resize the volume (`playground volume resize VOLUME --size GB`) or give "
            "the app a larger --size-limit, then run `playground data load` again",
        )
    return DatasetError(f"the kv did not acknowledge {what}: HTTP {r.status_code}: {_message(r)}")


def _put(client: httpx.Client, base_url: str, key: str, value: bytes) -> None:
    try:
        r = client.put(_url(base_url, key), content=value)
    except httpx.HTTPError as exc:
        raise _unreachable(base_url, exc) from None
    if not 200 <= r.status_code < 300:
        raise _refusal(r, f"PUT {key}")


def _get(client: httpx.Client, base_url: str, key: str) -> bytes | None:
    try:
        r = client.get(_url(base_url, key))
    except httpx.HTTPError as exc:
        raise _unreachable(base_url, exc) from None
    if r.status_code == 404:
        return None
    if r.status_code != 200:
        raise DatasetError(f"GET {key} from the kv failed: HTTP {r.status_code}: {_message(r)}")
    return r.content


def _run_bounded(
    items: Iterable[Any],
    fn: Callable[[Any], Any],
    concurrency: int,
    total: int,
    progress: Progress | None,
) -> list[Any]:
    """Call ``fn`` on every item with at most ``concurrency`` calls in flight; results in
    item order. The first exception stops new calls and is raised once the others end."""
    results: dict[int, Any] = {}
    pending: dict[Future[Any], int] = {}
    failed: list[BaseException] = []
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        it = iter(enumerate(items))
        exhausted = False
        while pending or not exhausted:
            while not exhausted and not failed and len(pending) < max(1, concurrency):
                try:
                    i, item = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending[pool.submit(fn, item)] = i
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = pending.pop(fut)
                exc = fut.exception()
                if exc is not None:
                    failed.append(exc)
                    continue
                results[i] = fut.result()
                done += 1
                if progress is not None:
                    progress(done, total)
            if failed:
                exhausted = True
    if failed:
        raise failed[0]
    return [results[i] for i in sorted(results)]


# ---- load and verify ----------------------------------------------------------------------
def load(
    base_url: str,
    records: Sequence[Record],
    prefix: str = DEFAULT_PREFIX,
    seed: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
    timeout: float = 30.0,
    ready_timeout: float = 5.0,
) -> LoadResult:
    """Write ``records`` into the ``kv`` at ``base_url``, then their manifest.

    The data set's old manifest is deleted first, so a load that fails half-way leaves
    no manifest (``verify`` then says so) rather than one describing other data. Every
    write must be acknowledged with a 2xx; the first one that is not stops the load.

    Args:
        base_url: the kv service, e.g. ``http://127.0.0.3:31002``.
        records: what to write (from :func:`generate`).
        prefix: the data set's prefix (names the manifest).
        seed: recorded in the manifest (None: unknown).
        concurrency: writes in flight at a time (>= 1).
        progress: called with (records written, total) after each acknowledged write.
        timeout: per-request timeout in seconds.
        ready_timeout: how long to wait for a kv that does not accept connections yet.

    Returns:
        What was written.

    Raises:
        DatasetError: the kv cannot be reached, is not a kv, refuses a write (a full
            volume says so, with the hint to resize) or answers an error.
    """
    check_prefix(prefix)
    mkey = manifest_key(prefix)
    start = time.monotonic()
    limits = httpx.Limits(max_connections=max(1, concurrency))
    with httpx.Client(timeout=timeout, limits=limits) as client:
        stats = check_kv(client, base_url, ready_timeout)
        try:
            r = client.delete(_url(base_url, mkey))
        except httpx.HTTPError as exc:
            raise _unreachable(base_url, exc) from None
        if r.status_code not in (200, 404):
            raise _refusal(r, f"DELETE {mkey} (the old manifest)")

        def put(rec: Record) -> None:
            _put(client, base_url, rec.key, rec.value)

        try:
            _run_bounded(records, put, concurrency, len(records), progress)
        except DatasetError as exc:
            raise DatasetError(
                f"{exc} (load of {len(records)} records stopped; no manifest written)",
                hint=exc.hint,
            ) from None
        manifest = build_manifest(prefix, records, seed)
        _put(client, base_url, mkey, manifest)
    digests = {r.key: r.sha256 for r in records}
    return LoadResult(
        prefix=prefix,
        count=len(records),
        checksum=overall_checksum(digests),
        manifest_key=mkey,
        seconds=time.monotonic() - start,
        durable=bool(stats.get("durable")),
    )


def parse_manifest(raw: bytes, key: str) -> dict[str, str]:
    """The ``{key: sha256}`` map of a manifest, checked against its own checksum.

    Raises:
        DatasetError: the manifest is not one, or it was altered (its checksum does not
            match the digests it lists).
    """
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise DatasetError(f"the manifest {key} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != MANIFEST_KIND:
        raise DatasetError(f"{key} is not a data set manifest (no kind {MANIFEST_KIND!r})")
    if doc.get("schema_version") != MANIFEST_SCHEMA:
        raise DatasetError(
            f"the manifest {key} has schema_version {doc.get('schema_version')!r}; "
            f"this kit reads {MANIFEST_SCHEMA}"
        )
    digests = doc.get("records")
    if not isinstance(digests, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in digests.items()
    ):
        raise DatasetError(f"the manifest {key} has no valid 'records' map")
    if overall_checksum(digests) != doc.get("checksum"):
        raise DatasetError(
            f"the manifest {key} was altered: its checksum does not match the records it lists"
        )
    return {str(k): str(v) for k, v in digests.items()}


def verify(
    base_url: str,
    prefix: str = DEFAULT_PREFIX,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
    timeout: float = 30.0,
    ready_timeout: float = 5.0,
) -> VerifyResult:
    """Check every record the data set's manifest lists is in the ``kv``, unchanged.

    Args:
        base_url: the kv service.
        prefix: the data set's prefix.
        concurrency: reads in flight at a time.
        progress: called with (records read, total).
        timeout: per-request timeout in seconds.
        ready_timeout: how long to wait for a kv that does not accept connections yet.

    Returns:
        The result; ``ok`` only when nothing is missing or changed.

    Raises:
        DatasetError: the kv cannot be reached or is not a kv, the manifest is missing,
            or the manifest is not valid.
    """
    mkey = manifest_key(prefix)
    limits = httpx.Limits(max_connections=max(1, concurrency))
    with httpx.Client(timeout=timeout, limits=limits) as client:
        check_kv(client, base_url, ready_timeout)
        raw = _get(client, base_url, mkey)
        if raw is None:
            raise DatasetError(
                f"no manifest {mkey} in the kv at {base_url}: no data set {prefix!r} was "
                "loaded here, or its manifest was lost",
                hint=f"`playground data load --app APP_ID --prefix {prefix}` writes one",
            )
        expected = parse_manifest(raw, mkey)
        keys = sorted(expected)

        def read(key: str) -> bytes | None:
            return _get(client, base_url, key)

        values = _run_bounded(keys, read, concurrency, len(keys), progress)
    actual: dict[str, str] = {}
    missing: list[str] = []
    changed: list[str] = []
    for key, value in zip(keys, values, strict=True):
        if value is None:
            missing.append(key)
            continue
        digest = hashlib.sha256(value).hexdigest()
        actual[key] = digest
        if digest != expected[key]:
            changed.append(key)
    return VerifyResult(
        prefix=prefix,
        manifest_key=mkey,
        count=len(keys),
        checksum=overall_checksum(actual),
        expected_checksum=overall_checksum(expected),
        missing=missing,
        changed=changed,
    )
