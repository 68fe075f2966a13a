"""gRPC server and client plumbing shared by every service."""
