"""SQL implementation of the files repository, on one session (the unit of work's)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from eventforge.files.adapters.tables import file_outputs, files
from eventforge.files.domain.model import (
    File,
    FileKind,
    FileOutput,
    FileStatus,
    ImageInfo,
    Location,
)
from eventforge.files.service_layer.ports import FileRepository

_SCALARS = (
    "file_name",
    "content_type",
    "declared_size_bytes",
    "notify_email",
    "rejection_reason",
    "size_bytes",
    "sha256",
    "detected_content_type",
    "page_count",
    "order_id",
)


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _row_of(file: File) -> dict[str, Any]:
    row = {name: getattr(file, name) for name in _SCALARS}
    return {
        **row,
        "file_id": file.file_id,
        "kind": file.kind.value,
        "status": file.status.value,
        "bucket": file.location.bucket,
        "object_key": file.location.key,
        "upload_expires_at": file.upload_expires_at,
        "image_width": file.image.width if file.image else None,
        "image_height": file.image.height if file.image else None,
        "created_at": file.created_at,
        "updated_at": file.updated_at,
    }


class SqlFiles(FileRepository):
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, file: File) -> None:
        self.session.execute(sa.insert(files).values(**_row_of(file)))
        self._insert_outputs(file)

    def get(self, file_id: str, *, for_update: bool = False) -> File | None:
        return self._one(files.c.file_id == file_id, for_update=for_update)

    def save(self, file: File) -> None:
        self.session.execute(
            sa.update(files).where(files.c.file_id == file.file_id).values(**_row_of(file))
        )
        self.session.execute(sa.delete(file_outputs).where(file_outputs.c.file_id == file.file_id))
        self._insert_outputs(file)

    def receipt_for(self, order_id: str) -> File | None:
        return self._one(files.c.order_id == order_id)

    def add_receipt(self, receipt: File) -> bool:
        try:
            with self.session.begin_nested():
                self.add(receipt)
        except IntegrityError:
            return False
        return True

    def expired_uploads(self, *, before: datetime, limit: int) -> list[File]:
        query = (
            sa.select(files)
            .where(
                files.c.status == FileStatus.PENDING_UPLOAD.value,
                files.c.upload_expires_at < before,
            )
            .order_by(files.c.upload_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return self._load(list(self.session.execute(query).mappings()))

    def _one(self, condition: sa.ColumnElement[bool], *, for_update: bool = False) -> File | None:
        query = sa.select(files).where(condition)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).mappings().one_or_none()
        return self._load([row])[0] if row is not None else None

    def _insert_outputs(self, file: File) -> None:
        if not file.outputs:
            return
        self.session.execute(
            sa.insert(file_outputs),
            [
                {
                    "file_id": file.file_id,
                    "variant": output.variant,
                    "content_type": output.content_type,
                    "size_bytes": output.size_bytes,
                    "bucket": output.location.bucket,
                    "object_key": output.location.key,
                }
                for output in file.outputs
            ],
        )

    def _load(self, rows: Sequence[Any]) -> list[File]:
        ids = [row["file_id"] for row in rows]
        outputs: dict[str, list[FileOutput]] = {file_id: [] for file_id in ids}
        query = (
            sa.select(file_outputs)
            .where(file_outputs.c.file_id.in_(ids))
            .order_by(file_outputs.c.file_id, file_outputs.c.variant)
        )
        for output in self.session.execute(query).mappings():
            outputs[output["file_id"]].append(
                FileOutput(
                    variant=output["variant"],
                    content_type=output["content_type"],
                    size_bytes=output["size_bytes"],
                    location=Location(output["bucket"], output["object_key"]),
                )
            )
        loaded = []
        for row in rows:
            width, height = row["image_width"], row["image_height"]
            expires = row["upload_expires_at"]
            loaded.append(
                File(
                    file_id=row["file_id"],
                    kind=FileKind(row["kind"]),
                    status=FileStatus(row["status"]),
                    location=Location(row["bucket"], row["object_key"]),
                    upload_expires_at=utc(expires) if expires else None,
                    image=ImageInfo(width, height) if width is not None else None,
                    outputs=outputs[row["file_id"]],
                    created_at=utc(row["created_at"]),
                    updated_at=utc(row["updated_at"]),
                    **{name: row[name] for name in _SCALARS},
                )
            )
        return loaded
