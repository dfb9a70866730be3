# Linux image for the node-local services (device, memory, ...) and their Python workers.
# TORCH_LANE=cpu|cuda: which torch build the workers get (CUDA from PyPI is several GB).
#   docker build -f deploy/docker/node.Dockerfile -t dops/node:0.1.0 .                              (processing, CPU)
#   docker build -f deploy/docker/node.Dockerfile --build-arg TORCH_LANE=cuda -t dops/node-cuda:0.1.0 .
# grpc_health_probe (Go module proxy, pinned): compose's healthchecks ask each service's plaintext
# health port (DOPS_GRPC_HEALTH_PORT) with it; Kubernetes uses the kubelet's own gRPC probes.
FROM golang:1.26-bookworm AS health-probe
RUN CGO_ENABLED=0 GOBIN=/out go install github.com/grpc-ecosystem/grpc-health-probe@v0.4.63

FROM node:20.19.5-bookworm-slim
COPY --from=health-probe /out/grpc-health-probe /usr/local/bin/grpc_health_probe
ARG TORCH_LANE=cpu
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/dops
COPY package.json package-lock.json nx.json tsconfig.base.json tsconfig.json ./
COPY apps apps
COPY libs libs
COPY proto proto
COPY python-workers python-workers
COPY tools tools
RUN npm ci --no-audit --no-fund && npx nx run proto:generate
RUN python3 -m venv .venv \
    && if [ "$TORCH_LANE" = cpu ]; then .venv/bin/pip install --no-cache-dir torch==2.11.0 --index-url https://download.pytorch.org/whl/cpu; \
       else .venv/bin/pip install --no-cache-dir -r python-workers/requirements/torch.txt; fi \
    && .venv/bin/pip install --no-cache-dir -r python-workers/requirements/cpu.txt \
    && .venv/bin/pip install --no-cache-dir --no-deps -e python-workers
ENV DOPS_PYTHON=/opt/dops/.venv/bin/python NODE_ENV=production
ARG SERVICE=device
ENV DOPS_SERVICE=${SERVICE}
EXPOSE 50051
# tini-free: node forwards SIGTERM to the service, which stops its workers' process groups.
# umask 077: what the service and its workers write (artifacts, inputs, the model registry) is owner-only.
CMD ["sh", "-c", "umask 077 && exec npx tsx apps/${DOPS_SERVICE}/src/main.ts"]
