"""The media bucket as the API uses it: multipart uploads, presigned URLs, deletion.

Two S3 clients: one the API itself calls, and one that only signs URLs for clients, with
S3_PUBLIC_ENDPOINT_URL when clients reach S3 elsewhere than the API does (a signature
covers the host, so the URL must be signed for the host the client will call).
"""

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from app.infra import aws
from app.infra.settings import Settings

# What S3 (and moto) answer for a key or an upload that does not exist.
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})


def is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in MISSING_CODES


@dataclass(frozen=True)
class StoredPart:
    part_number: int
    etag: str
    size: int


def normalize_etag(etag: str) -> str:
    """ETags as S3 lists them are quoted; clients may send them either way."""
    return etag.strip().strip('"').lower()


class MediaObjects:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self._stack = contextlib.AsyncExitStack()
        self._s3: Any = None
        self._signer: Any = None

    async def open(self) -> None:
        self._s3 = await self._stack.enter_async_context(aws.client(self.settings, "s3"))
        public = self.settings.s3_public_endpoint_url
        if public and public != self.settings.aws_endpoint_url:
            signer_settings = self.settings.model_copy(update={"aws_endpoint_url": public})
            self._signer = await self._stack.enter_async_context(aws.client(signer_settings, "s3"))
        else:
            self._signer = self._s3

    async def close(self) -> None:
        await self._stack.aclose()

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            raise RuntimeError("MediaObjects.open() was not called")
        return self._s3

    async def create_upload(self, key: str, content_type: str) -> str:
        created = await self.s3.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type
        )
        return str(created["UploadId"])

    async def part_urls(
        self, key: str, upload_id: str, part_count: int
    ) -> tuple[list[tuple[int, str]], datetime]:
        """Presigned UploadPart URLs for parts 1..part_count, and when they expire."""
        ttl = self.settings.media_upload_url_ttl_seconds
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
        urls = []
        for number in range(1, part_count + 1):
            url = await self._signer.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "UploadId": upload_id,
                    "PartNumber": number,
                },
                ExpiresIn=ttl,
            )
            urls.append((number, url))
        return urls, expires_at

    async def uploaded_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        """The parts S3 holds of the upload (raises ClientError NoSuchUpload once it is
        completed or aborted)."""
        parts: list[StoredPart] = []
        marker = 0
        while True:
            page = await self.s3.list_parts(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
            )
            parts.extend(
                StoredPart(int(p["PartNumber"]), normalize_etag(p["ETag"]), int(p["Size"]))
                for p in page.get("Parts", [])
            )
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])

    async def complete_upload(self, key: str, upload_id: str, parts: list[StoredPart]) -> None:
        await self.s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": p.part_number, "ETag": f'"{p.etag}"'} for p in parts]
            },
        )

    async def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            await self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if not is_missing(exc):
                raise

    async def size_of(self, key: str) -> int | None:
        """The object's size, or None if there is no such object."""
        try:
            head = await self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; how many there were."""
        deleted = 0
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = await self.s3.list_objects_v2(**kwargs)
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                result = await self.s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                if result.get("Errors"):
                    raise RuntimeError(f"S3 refused to delete: {result['Errors'][:3]}")
                deleted += len(keys)
            if not page.get("IsTruncated"):
                return deleted
            token = page["NextContinuationToken"]

    async def download_url(
        self, key: str, *, content_type: str, filename: str | None = None
    ) -> tuple[str, datetime]:
        """A presigned GET of `key`, and when it expires."""
        ttl = self.settings.media_playback_url_ttl_seconds
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentType": content_type,
        }
        if filename:
            # RFC 6266/5987: any file name, safely encoded.
            params["ResponseContentDisposition"] = f"inline; filename*=UTF-8''{quote(filename)}"
        url = await self._signer.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl)
        return url, datetime.now(UTC) + timedelta(seconds=ttl)
