"""Entrypoints: the HTTP API (uvicorn locally, Lambda behind API Gateway) and the worker."""
