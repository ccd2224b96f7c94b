"""Blobs in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO, ...) through aiobotocore.

Why: replicas share results through the bucket. One client (one connection pool) per gateway,
opened at start-up; files larger than one part are uploaded as a multipart upload read part by
part, and downloads are streamed from the response body, so no blob is ever held whole in memory
unless the caller handed it over as bytes. Credentials come from settings or, when unset, from
the standard AWS chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, profiles, roles).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.service.blobs import CHUNK_BYTES, BlobNotFound, BlobStream, check_key

log = logging.getLogger("gateway.blobs")

#: parts of a multipart upload (S3's minimum is 5 MiB; at most this much is in memory at once)
PART_BYTES = 8 * 1024 * 1024
#: S3 DeleteObjects takes at most 1000 keys per call
DELETE_BATCH = 1000
_MISSING = {"404", "NoSuchKey", "NotFound"}


def _missing(error: Exception) -> bool:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code")) in _MISSING


def parse_object_store_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, prefix without slashes at either end)."""
    if not url.startswith("s3://"):
        raise ValueError("object_store_url must look like s3://bucket/prefix")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    return bucket, prefix.strip("/")


class S3BlobStore:
    """Key ``k`` is object ``<prefix>/k`` in ``bucket``."""

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        create_bucket: bool = False,
        addressing_style: str = "path",
    ) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.region = region
        self.create_bucket = create_bucket
        self._credentials = {
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
        }
        self.addressing_style = addressing_style
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("the object store client is not started")
        return self._client

    async def start(self) -> None:
        """Open the client and check the bucket (creating it when allowed)."""
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        credentials = {k: v for k, v in self._credentials.items() if v}
        config = AioConfig(
            s3={"addressing_style": self.addressing_style},
            signature_version="s3v4",
            retries={"max_attempts": 3, "mode": "standard"},
        )
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config, **credentials
            )
        )
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except Exception as error:
            if not (_missing(error) and self.create_bucket):
                await self.close()
                raise
            await self._client.create_bucket(Bucket=self.bucket)
            log.info("bucket created", extra={"bucket": self.bucket})

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    async def check(self) -> None:
        await self.client.head_bucket(Bucket=self.bucket)

    async def put(self, key: str, source: bytes | Path, *, move: bool = False) -> int:
        name = self.object_key(key)
        try:
            if isinstance(source, bytes):
                await self.client.put_object(Bucket=self.bucket, Key=name, Body=source)
                return len(source)
            return await self._put_file(name, source)
        finally:
            if move and isinstance(source, Path):
                source.unlink(missing_ok=True)

    async def _put_file(self, name: str, path: Path) -> int:
        """One PUT for a file that fits a part, else a multipart upload read one part at a time."""
        size = (await asyncio.to_thread(path.stat)).st_size
        with path.open("rb") as handle:
            if size <= PART_BYTES:
                body = await asyncio.to_thread(handle.read)
                await self.client.put_object(Bucket=self.bucket, Key=name, Body=body)
                return len(body)
            upload = await self.client.create_multipart_upload(Bucket=self.bucket, Key=name)
            upload_id = upload["UploadId"]
            parts: list[dict[str, Any]] = []
            try:
                while part := await asyncio.to_thread(handle.read, PART_BYTES):
                    number = len(parts) + 1
                    answer = await self.client.upload_part(
                        Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=part
                    )
                    parts.append({"ETag": answer["ETag"], "PartNumber": number})
                await self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
                    )
                raise
        return size

    async def open(self, key: str) -> BlobStream:
        try:
            answer = await self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as error:
            if _missing(error):
                raise BlobNotFound(key) from error
            raise
        body = answer["Body"]

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in body.iter_chunks(CHUNK_BYTES):
                    yield chunk
            finally:
                body.close()

        return BlobStream(int(answer["ContentLength"]), chunks())

    async def read(self, key: str) -> bytes:
        stream = await self.open(key)
        return b"".join([chunk async for chunk in stream.chunks])

    async def size(self, key: str) -> int | None:
        try:
            answer = await self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as error:
            if _missing(error):
                return None
            raise
        return int(answer["ContentLength"])

    async def delete(self, keys: list[str]) -> None:
        names = [self.object_key(key) for key in keys]
        for start in range(0, len(names), DELETE_BATCH):
            batch = [{"Key": name} for name in names[start : start + DELETE_BATCH]]
            answer = await self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
            )
            failed = [e for e in answer.get("Errors", []) if e.get("Code") not in _MISSING]
            if failed:
                raise OSError(f"deleting {len(failed)} objects failed: {failed[0].get('Message')}")

    async def presigned_url(self, key: str, expires_s: float, filename: str, media_type: str) -> str | None:
        params = {
            "Bucket": self.bucket,
            "Key": self.object_key(key),
            "ResponseContentType": media_type,
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
            "ResponseCacheControl": "private, max-age=3600",
        }
        url: str = await self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=int(expires_s)
        )
        return url

    def scratch_dir(self) -> Path:
        return Path(tempfile.gettempdir())
