# model-manager: one image for every role (--role all|server|loader).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY model_manager ./model_manager
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 mm
COPY --from=build /install /usr/local
COPY deploy/container.yaml /etc/model-manager/config.yaml
RUN mkdir /data && chown mm /data
VOLUME /data
USER mm
WORKDIR /home/mm
EXPOSE 8080 8081 8082
# The REST port's liveness check (the slim image has no curl). Loader-only containers serve no HTTP: turn it off
# for them (docker-compose.yaml does).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["model-manager"]
CMD ["run", "--config", "/etc/model-manager/config.yaml", "--role", "all"]
