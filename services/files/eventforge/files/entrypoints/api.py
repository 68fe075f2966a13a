"""The files gRPC API process: FilesService calls → service-layer handlers."""

from __future__ import annotations

import threading

import grpc

from eventforge.files.bootstrap import FilesApp, bootstrap
from eventforge.files.entrypoints.convert import (
    file_proto,
    request_download,
    request_upload,
    timestamp,
    upload_proto,
)
from eventforge.files.service_layer import handlers
from eventforge.files.v1 import files_pb2, files_pb2_grpc
from eventforge.runtime.db import ping
from eventforge.runtime.grpc.server import serve
from eventforge.runtime.settings import Settings

SERVICE_NAME = files_pb2.DESCRIPTOR.services_by_name["FilesService"].full_name


class FilesServicer(files_pb2_grpc.FilesServiceServicer):
    """Translates FilesService calls into service-layer handlers."""

    def __init__(self, app: FilesApp) -> None:
        self.app = app

    def CreateUpload(  # noqa: N802 - gRPC method name
        self, request: files_pb2.CreateUploadRequest, context: grpc.ServicerContext
    ) -> files_pb2.CreateUploadResponse:
        ticket = handlers.create_upload(
            command=request_upload(request),
            uow=self.app.uow(),
            storage=self.app.storage,
            limits=self.app.limits,
        )
        return files_pb2.CreateUploadResponse(
            file=file_proto(ticket.file), upload=upload_proto(ticket)
        )

    def GetFile(  # noqa: N802
        self, request: files_pb2.GetFileRequest, context: grpc.ServicerContext
    ) -> files_pb2.GetFileResponse:
        file = handlers.get_file(file_id=request.file_id, uow=self.app.uow())
        return files_pb2.GetFileResponse(file=file_proto(file))

    def GetDownloadUrl(  # noqa: N802
        self, request: files_pb2.GetDownloadUrlRequest, context: grpc.ServicerContext
    ) -> files_pb2.GetDownloadUrlResponse:
        link = handlers.download_url(
            command=request_download(request),
            uow=self.app.uow(),
            storage=self.app.storage,
            limits=self.app.limits,
        )
        return files_pb2.GetDownloadUrlResponse(
            url=link.url, expire_time=timestamp(link.expires_at), file_id=link.file_id
        )


def main(settings: Settings, stop: threading.Event) -> None:
    """Serve FilesService until told to stop."""
    app = bootstrap(settings, pre_ping=False)
    servicer = FilesServicer(app)
    serve(
        settings,
        settings.address_of("files"),
        lambda server: files_pb2_grpc.add_FilesServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
        probe=lambda: ping(app.engine),
        stop=stop,
        identity="files",
    )
