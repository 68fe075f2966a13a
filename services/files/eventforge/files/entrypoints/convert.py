"""Translate between files protos and the domain."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from eventforge.files.domain.commands import RequestDownload, RequestUpload
from eventforge.files.domain.model import File
from eventforge.files.service_layer.handlers import UploadTicket
from eventforge.files.v1 import files_pb2

_METHODS = {
    files_pb2.UPLOAD_METHOD_UNSPECIFIED: "",
    files_pb2.UPLOAD_METHOD_POST: "POST",
    files_pb2.UPLOAD_METHOD_PUT: "PUT",
}


def request_upload(request: files_pb2.CreateUploadRequest) -> RequestUpload:
    return RequestUpload(
        file_name=request.file_name,
        content_type=request.content_type,
        size_bytes=request.size_bytes,
        # An enum value this build does not know fails validation instead of meaning POST.
        method=_METHODS.get(request.method, f"unknown ({request.method})"),
        notify_email=request.notify_email,
    )


def request_download(request: files_pb2.GetDownloadUrlRequest) -> RequestDownload:
    target = request.WhichOneof("target")
    return RequestDownload(
        file_id=request.file_id if target == "file_id" else "",
        receipt_order_id=request.receipt_order_id if target == "receipt_order_id" else "",
        variant=request.variant,
    )


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def file_proto(file: File) -> files_pb2.File:
    message = files_pb2.File(
        file_id=file.file_id,
        kind=files_pb2.FileKind.Value(f"FILE_KIND_{file.kind.value}"),
        file_name=file.file_name,
        content_type=file.content_type,
        declared_size_bytes=file.declared_size_bytes,
        status=files_pb2.FileStatus.Value(f"FILE_STATUS_{file.status.value}"),
        rejection_reason=file.rejection_reason,
        size_bytes=file.size_bytes,
        sha256=file.sha256,
        detected_content_type=file.detected_content_type,
        outputs=[
            files_pb2.FileOutput(
                variant=output.variant,
                content_type=output.content_type,
                size_bytes=output.size_bytes,
            )
            for output in file.outputs
        ],
        order_id=file.order_id or "",
        create_time=timestamp(file.created_at),
        update_time=timestamp(file.updated_at),
    )
    if file.image is not None:
        message.image.CopyFrom(
            files_pb2.ImageInfo(width=file.image.width, height=file.image.height)
        )
    if file.page_count is not None:
        message.document.CopyFrom(files_pb2.DocumentInfo(page_count=file.page_count))
    return message


def upload_proto(ticket: UploadTicket) -> files_pb2.PresignedUpload:
    upload = ticket.upload
    return files_pb2.PresignedUpload(
        method=files_pb2.UPLOAD_METHOD_PUT
        if upload.method == "PUT"
        else files_pb2.UPLOAD_METHOD_POST,
        url=upload.url,
        fields=dict(upload.fields),
        headers=dict(upload.headers),
        expire_time=timestamp(ticket.expires_at),
    )
