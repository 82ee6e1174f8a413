"""An S3 bucket prefix as a store (an :class:`~imnet_data.stores.base.UploadStore`): AWS S3, MinIO, Cloudflare
R2, Ceph, and Google Cloud Storage through its S3 interoperability endpoint (``gs://``, HMAC keys).

boto3, because it is what the ecosystem configures: credentials from the usual chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and ``~/.aws``, SSO, instance roles), the
endpoint from ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) as boto3 and the AWS CLI read it, anonymous
(unsigned) requests when no credentials are found (public buckets). Credentials are never printed nor written
anywhere. Measured against obstore and s3fs before choosing (see the README): single-stream reads as fast as
obstore's, twice s3fs's.

botocore's own retries are off: every request goes through the store's ``policy`` (the writers' retries with
backoff, counted; for ``stage``, once: its transfers retry and resume themselves). Errors are sorted into
permanent ones naming the object or bucket (403, NoSuchKey, NoSuchBucket, bad credentials) and
:class:`~imnet_data.stores.errors.Retry` (503 SlowDown, 500, throttling, dropped connections). Large uploads are
multipart; every uploaded file carries its sha256 as metadata and is checked (size and sha256) once it has landed.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from imnet_data.errors import UsageError
from imnet_data.stores.base import Stat, capped_read, check_range, direct_reader
from imnet_data.stores.errors import Policy, Retry, StoreError, once

GCS_ENDPOINT = "https://storage.googleapis.com"
PART = 64 << 20             # bytes per multipart part, and the size from which uploads are multipart
MISSING = {"NoSuchKey", "404", "NotFound"}
DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
          "AllAccessDisabled", "AccountProblem"}
TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                   "InternalError", "ServiceUnavailable", "503", "500"}
INSTALL = "pip install 'imnet-data[s3]' (boto3)"


class Missing(Exception):
    """The object is not there (NoSuchKey): a metadata read turns it into None."""


def split_url(url: str) -> tuple[str, str, str]:
    """``(scheme, bucket, prefix)`` of ``s3://bucket/prefix`` (UsageError for anything else)."""
    m = re.match(r"^(s3|gs)://([a-z0-9][a-z0-9.\-_]{1,220}[a-z0-9])(?:/(.*))?$", url)
    if not m:
        raise UsageError(f"{url}: not an object-store URL (s3://bucket/prefix or gs://bucket/prefix; a bucket name "
                         "is 3 or more lowercase letters, digits, dots or hyphens)")
    return m.group(1), m.group(2), (m.group(3) or "").strip("/")


def client(scheme: str, jobs: int, timeout: tuple[float, float]):
    """A boto3 S3 client as the ecosystem configures it (see the module doc), pooled for ``jobs`` threads."""
    try:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config
    except ImportError as e:
        raise UsageError(f"object-store URLs need boto3: {INSTALL}") from e
    session = boto3.session.Session()
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or (
        GCS_ENDPOINT if scheme == "gs" else None)
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=max(jobs, 1) + 4,
                    connect_timeout=timeout[0], read_timeout=timeout[1],
                    s3={"addressing_style": "path"} if endpoint else {},
                    signature_version=UNSIGNED if session.get_credentials() is None else None)
    return session.client("s3", endpoint_url=endpoint, config=config,
                          region_name=session.region_name or os.environ.get("AWS_REGION") or "us-east-1")


class S3Store:
    """The objects under ``bucket/prefix``; names are keys below the prefix."""

    def __init__(self, scheme: str, bucket: str, prefix: str, s3, policy: Policy = once) -> None:
        self.scheme, self.bucket, self.prefix, self.s3, self.policy = scheme, bucket, prefix.strip("/"), s3, policy

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")

    def child(self, name: str) -> S3Store:
        """The store of a sub-prefix."""
        return S3Store(self.scheme, self.bucket, self.key(name), self.s3, self.policy)

    def key(self, name: str) -> str:
        """The object key of ``name``: below the prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def url(self, name: str) -> str:
        """``s3://bucket/key`` (or ``gs://``)."""
        return f"{self.scheme}://{self.bucket}/{self.key(name)}"

    def local_folder(self) -> Path | None:
        """None: not a folder."""
        return None

    def call(self, name: str, method: str, **kwargs):
        """One request about object ``name`` under the store's policy, its errors sorted (see the module doc)."""
        def request() -> object:
            try:
                return getattr(self.s3, method)(Bucket=self.bucket, **kwargs)
            except Exception as e:  # noqa: BLE001 -- botocore raises many types; each is sorted below
                raise sorted_error(e, self.url(name), self.bucket) from e
        return self.policy(self.url(name), request)

    def read(self, name: str) -> bytes | None:
        """A metadata object's bytes (None when absent; StoreError past the metadata cap)."""
        try:
            r = self.call(name, "get_object", Key=self.key(name))
        except Missing:
            return None
        with contextlib.closing(r["Body"]) as body:
            return capped_read(body.read, self.url(name), r["ContentLength"])

    @contextlib.contextmanager
    def open(self, name: str, start: int) -> Iterator[tuple[int, Callable[[memoryview], int]]]:
        """``(start, readinto)``: the object from byte ``start`` (a ranged GET), read into the caller's buffer
        (see :func:`~imnet_data.stores.base.direct_reader`)."""
        try:
            r = self.call(name, "get_object", Key=self.key(name), **({"Range": f"bytes={start}-"} if start else {}))
        except Missing:
            raise StoreError(f"{self.url(name)}: NoSuchKey: the object is not there") from None
        with contextlib.closing(r["Body"]) as body:
            if start:
                check_range(r.get("ContentRange"), start, self.url(name))
            with direct_reader(body._raw_stream) as readinto:   # botocore's body wraps a urllib3 response
                yield start, readinto

    def stat(self, name: str) -> Stat | None:
        """The object's size and the sha256 it was uploaded with (its ``sha256`` metadata, ``""`` when it has
        none); None when absent."""
        try:
            found = self.call(name, "head_object", Key=self.key(name))
        except Missing:
            return None
        return Stat(found["ContentLength"], found.get("Metadata", {}).get("sha256", ""))

    def write(self, name: str, data: bytes) -> None:
        """One small object (a manifest); an object appears whole or not at all."""
        self.call(name, "put_object", Key=self.key(name), Body=data,
                  Metadata={"sha256": hashlib.sha256(data).hexdigest()})

    def put(self, name: str, path: Path, sha256: str) -> None:
        """A file as object ``name`` (multipart from :data:`PART` bytes) with ``sha256`` as its metadata, then
        checked: the bytes sent must have that sha256 (else StoreError: the file is not the one recorded; nothing
        is left under the name), and the object must have landed with the file's size (else Retry). Each request
        is retried by the store's policy (a failed part is sent again, not the whole file); a failure that
        outlasts it aborts the upload."""
        size = path.stat().st_size
        h = hashlib.sha256()
        if size < PART:
            body = path.read_bytes()
            check_sent(h, body, sha256, path)
            self.call(name, "put_object", Key=self.key(name), Body=body, Metadata={"sha256": sha256})
        else:
            self.multipart(name, path, sha256, h)
        found = self.stat(name)
        if found != Stat(size, sha256):
            raise Retry(f"{self.url(name)}: uploaded, but the object is not the file ({found} for {size:,} bytes)")

    def multipart(self, name: str, path: Path, sha256: str, h: hashlib._Hash) -> None:
        """Upload in parts of :data:`PART` bytes; completed only when the parts' bytes have ``sha256``."""
        key = self.key(name)
        upload = self.call(name, "create_multipart_upload", Key=key, Metadata={"sha256": sha256})["UploadId"]
        try:
            parts = []
            with open(path, "rb") as f:
                for number, chunk in enumerate(iter(lambda: f.read(PART), b""), 1):
                    h.update(chunk)
                    done = self.call(name, "upload_part", Key=key, UploadId=upload, PartNumber=number, Body=chunk)
                    parts.append({"PartNumber": number, "ETag": done["ETag"]})
            check_sent(h, b"", sha256, path)
            self.call(name, "complete_multipart_upload", Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            raise

    def sha256(self, name: str) -> str:
        """The sha256 of the object's bytes, read through (what ``--verify`` checks)."""
        h = hashlib.sha256()
        buffer = memoryview(bytearray(1 << 20))
        with self.open(name, 0) as (_, readinto):
            while n := readinto(buffer):
                h.update(buffer[:n])
        return h.hexdigest()

    def names(self) -> list[str]:
        """Every key under the prefix, relative to it."""
        base = self.key("")
        out, token = [], None
        while True:
            page = self.call("", "list_objects_v2", Prefix=base, **({"ContinuationToken": token} if token else {}))
            out += [o["Key"][len(base):] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return out
            token = page["NextContinuationToken"]

    def delete(self, name: str) -> None:
        """Remove the object (nothing when absent)."""
        self.call(name, "delete_object", Key=self.key(name))


def check_sent(h: hashlib._Hash, last: bytes, sha256: str, path: Path) -> None:
    """StoreError unless the bytes hashed into ``h`` (and ``last``) have the sha256 the file was recorded with."""
    h.update(last)
    if h.hexdigest() != sha256:
        raise StoreError(f"{path}: sha256 {h.hexdigest()[:12]}... is not the recorded {sha256[:12]}...: the file "
                         "changed after it was written; not uploaded")


def sorted_error(error: Exception, url: str, bucket: str) -> Exception:
    """A botocore error as Missing, a permanent StoreError naming the object or bucket, or Retry."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(error, ClientError):
        info, meta = error.response.get("Error", {}), error.response.get("ResponseMetadata", {})
        code, status = str(info.get("Code", "")), int(meta.get("HTTPStatusCode") or 0)
        if code in MISSING:
            return Missing(url)
        if code == "NoSuchBucket":
            return StoreError(f"{url}: NoSuchBucket: there is no bucket {bucket!r} at this endpoint")
        if code in DENIED or status in (401, 403):
            return StoreError(f"{url}: {code or status} (HTTP {status}): access to bucket {bucket!r} refused; check "
                              "the credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE) and the bucket policy")
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return Retry(f"{url}: {code} (HTTP {status})")
        return StoreError(f"{url}: {code} (HTTP {status}): {info.get('Message', '')}")
    if isinstance(error, NoCredentialsError):
        return StoreError(f"{url}: no credentials for bucket {bucket!r}")
    if isinstance(error, BotoCoreError):
        return Retry(f"{url}: {type(error).__name__}: {error}")
    if isinstance(error, (ConnectionError, TimeoutError, OSError)):
        return Retry(f"{url}: {type(error).__name__}: {error}")
    return error


@contextlib.contextmanager
def s3_store(url: str, jobs: int, timeout: tuple[float, float], policy: Policy = once) -> Iterator[S3Store]:
    """The store of an ``s3://`` or ``gs://`` URL, its requests under ``policy``."""
    scheme, bucket, prefix = split_url(url)
    yield S3Store(scheme, bucket, prefix, client(scheme, jobs, timeout), policy)
