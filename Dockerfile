# sis2fhir: the adapter as a container image (no test tools inside).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && useradd --create-home sis2fhir
USER sis2fhir
WORKDIR /data
ENTRYPOINT ["sis2fhir"]
CMD ["--help"]
