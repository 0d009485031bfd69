# The eda image of the dev environment (docker-compose.yml): `docker run eda:dev worker payment`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
# eda, then the reference shop (its own distribution: shop/pyproject.toml).
RUN pip install '.[otel]' ./shop && rm -rf /src/build /src/shop/build

# Not root: a system user whose home is the state directory (a named volume inherits its owner).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/eda --create-home --shell /usr/sbin/nologin eda
USER eda
WORKDIR /var/lib/eda
ENV EDA_STATE_DIR=/var/lib/eda

# SIGTERM (docker stop) lets running handlers finish: keep stop_grace_period above EDA_SHUTDOWN_TIMEOUT.
STOPSIGNAL SIGTERM
ENTRYPOINT ["eda"]
CMD ["--help"]
