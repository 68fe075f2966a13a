"""Shared service runtime: settings, gRPC, telemetry, logs and storage, with no business rules."""
