# One image for the four services. The entry command is the one `make run` uses:
# `pumpurs serve NAME` (scripts/run-local.sh); Kubernetes passes `serve NAME` as args,
# and the migration Jobs pass `migrate NAME`.
#
#   docker build -t pumpurs:0.1.0 .
#   docker run --read-only --tmpfs /tmp -e PUMPURS_ENV=development pumpurs:0.1.0 serve reporting
#
# The base is pinned to an exact tag, the Python the project is developed and tested on
# (3.11.7). A release build should pin it by digest as well
# (PYTHON_IMAGE=python:3.11.7-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# -- build: a virtualenv with the pinned requirements and the project --------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/pumpurs
COPY requirements.txt ./
RUN /opt/pumpurs/bin/pip install -r requirements.txt
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
RUN /opt/pumpurs/bin/pip install --no-deps . \
 && /opt/pumpurs/bin/python -m compileall -q /opt/pumpurs/lib

# -- run: the virtualenv only, as an unprivileged user ------------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 pumpurs \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pumpurs \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/pumpurs
COPY --from=build /opt/pumpurs /opt/pumpurs
# The root file system is read-only in Kubernetes: no bytecode written at run time (it was
# compiled above), temporary files and the data folder on emptyDir volumes.
ENV PATH=/opt/pumpurs/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    PUMPURS_DATA_DIR=/var/lib/pumpurs \
    PUMPURS_ENV=production
WORKDIR /var/lib/pumpurs
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["pumpurs"]
CMD ["--help"]
