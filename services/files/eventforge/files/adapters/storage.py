"""Object storage on S3: presigned uploads and downloads, and the worker's object operations."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from eventforge.files.domain.model import Location
from eventforge.files.service_layer.ports import PresignedUpload, Storage, StoredObject

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3Storage(Storage):
    """Logical bucket names resolve to this environment's physical ones (`Topology.resolve`)."""

    def __init__(self, s3: S3Client, buckets: Mapping[str, str]) -> None:
        self.s3 = s3
        self.buckets = dict(buckets)
        self._logical = {physical: logical for logical, physical in self.buckets.items()}

    def bucket_of(self, physical_name: str) -> str | None:
        return self._logical.get(physical_name)

    def presign_upload(
        self,
        *,
        method: str,
        location: Location,
        content_type: str,
        size_bytes: int,
        expires_in: int,
    ) -> PresignedUpload:
        bucket = self.buckets[location.bucket]
        if method == "PUT":
            url = self.s3.generate_presigned_url(
                "put_object",
                Params={
                    "Bucket": bucket,
                    "Key": location.key,
                    "ContentType": content_type,
                    "ContentLength": size_bytes,
                },
                ExpiresIn=expires_in,
            )
            headers = {"Content-Type": content_type, "Content-Length": str(size_bytes)}
            return PresignedUpload("PUT", url, headers=headers)
        post = self.s3.generate_presigned_post(
            bucket,
            location.key,
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", size_bytes, size_bytes],
            ],
            ExpiresIn=expires_in,
        )
        return PresignedUpload("POST", post["url"], fields=dict(post["fields"]))

    def presign_download(
        self, *, location: Location, content_type: str, download_name: str, expires_in: int
    ) -> str:
        return self.s3.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.buckets[location.bucket],
                "Key": location.key,
                "ResponseContentType": content_type,
                "ResponseContentDisposition": attachment(download_name),
            },
            ExpiresIn=expires_in,
        )

    def head(self, location: Location) -> StoredObject | None:
        try:
            reply = self.s3.head_object(Bucket=self.buckets[location.bucket], Key=location.key)
        except ClientError as error:
            if _missing(error):
                return None
            raise
        return StoredObject(size=reply["ContentLength"], last_modified=reply["LastModified"])

    def read(self, location: Location, *, max_bytes: int) -> bytes | None:
        try:
            reply = self.s3.get_object(
                Bucket=self.buckets[location.bucket],
                Key=location.key,
                Range=f"bytes=0-{max_bytes - 1}",
            )
        except ClientError as error:
            if _missing(error):
                return None
            raise
        with reply["Body"] as body:
            return body.read(max_bytes)

    def write(self, location: Location, data: bytes, content_type: str) -> None:
        self.s3.put_object(
            Bucket=self.buckets[location.bucket],
            Key=location.key,
            Body=data,
            ContentType=content_type,
        )

    def move(self, source: Location, target: Location) -> None:
        source_bucket = self.buckets[source.bucket]
        self.s3.copy_object(
            Bucket=self.buckets[target.bucket],
            Key=target.key,
            CopySource={"Bucket": source_bucket, "Key": source.key},
        )
        self.s3.delete_object(Bucket=source_bucket, Key=source.key)


def attachment(file_name: str) -> str:
    """A Content-Disposition that downloads (never renders) under the client's file name."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in file_name)
    encoded = urllib.parse.quote(file_name, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _missing(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _MISSING
