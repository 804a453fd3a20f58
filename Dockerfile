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
ENTRYPOINT ["model-manager"]
CMD ["run", "--config", "/etc/model-manager/config.yaml", "--role", "all"]
