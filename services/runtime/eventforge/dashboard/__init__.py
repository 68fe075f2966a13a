"""The local dashboard: traces, queues and DLQs, outboxes, sagas and metrics of a running stack.

`eventforge up` serves it on `EVENTFORGE_DASHBOARD_ADDR` (loopback, port 8800 by default);
`eventforge dashboard` serves it alone against a running stack. `eventforge.dashboard.app`
builds the FastAPI application (`create_app`); nothing is created when a module is imported.
It needs the `local` dependency group (FastAPI, uvicorn), which `make up` installs.
"""
