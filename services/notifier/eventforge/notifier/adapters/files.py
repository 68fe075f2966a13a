"""The files service over gRPC: presigned download links for the emails that need one."""

from __future__ import annotations

import grpc

from eventforge.files.v1 import files_pb2, files_pb2_grpc
from eventforge.notifier.service_layer.ports import FilesClient, FilesUnavailable


class GrpcFilesClient(FilesClient):
    def __init__(self, stub: files_pb2_grpc.FilesServiceStub, timeout_seconds: float) -> None:
        self.stub = stub
        self.timeout_seconds = timeout_seconds

    def download_url(self, file_id: str) -> str:
        try:
            reply = self.stub.GetDownloadUrl(
                files_pb2.GetDownloadUrlRequest(file_id=file_id), timeout=self.timeout_seconds
            )
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            name = code.name if code is not None else "ERROR"
            raise FilesUnavailable(f"files GetDownloadUrl({file_id}): {name} {details}") from error
        return reply.url
