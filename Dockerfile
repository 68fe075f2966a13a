# syntax=docker/dockerfile:1
# The one image of every EventForge process: `eventforge serve <service> <role>` on ECS, and
# the Lambda queue consumer through the runtime interface client (see infra/).
#
#   docker build -t eventforge .                     # local use, the machine's architecture
#   docker run --rm eventforge serve orders api
#
# For the cloud stacks (Graviton, `architecture: arm64`), one single-platform image without
# attestations (Lambda refuses an image index with provenance):
#   docker buildx build --platform linux/arm64 --provenance=false --load -t eventforge:TAG .

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Third-party dependencies first: this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./
COPY services/contracts/pyproject.toml services/contracts/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-default-groups --no-install-project --no-install-workspace
# Then the project and its workspace member (the generated contracts), installed as wheels so
# the runtime stage needs nothing but the virtual environment.
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-default-groups --no-editable
# The Lambda runtime interface client, for functions that run the queue consumer from this
# image (ECS tasks never load it). Pinned here because it is not part of the project's lock.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /app/.venv/bin/python --no-deps \
        awslambdaric==4.2.2 simplejson==4.3.0 snapshot-restore-py==1.0.0

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 eventforge \
    && useradd --system --uid 10001 --gid eventforge --no-create-home eventforge
COPY --from=build /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EVENTFORGE_DATA_DIR=/tmp/eventforge
WORKDIR /app
USER 10001:10001
ENTRYPOINT ["eventforge"]
CMD ["serve", "orders", "api"]
