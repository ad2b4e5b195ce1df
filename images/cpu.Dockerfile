# The cpu tier's worker: inferstack with cgo on Debian, ONNX Runtime 1.24.1
# (CPU) from the same npm package and sha256 sums as `make setup`.
# Build from the repository root: docker build -f images/cpu.Dockerfile -t inferstack-worker:cpu .
# Base images are pinned by version tag and apt packages by the versions
# bookworm served on 2026-11-27; pin digests where you build (no Docker engine here).

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags "-s -w" -o /out/inferstack ./cmd/inferstack

FROM node:20.20.2-bookworm-slim AS ort
WORKDIR /ort
# npm pack fetches the tarball without running its install script.
RUN npm pack --silent onnxruntime-node@1.24.1 \
 && echo "57181cf6e6e711b155c5b942d591fd63ded0b5de5c4922d51fd994e7f6ac2772  onnxruntime-node-1.24.1.tgz" | sha256sum -c - \
 && tar -xzf onnxruntime-node-1.24.1.tgz package/bin/napi-v6/linux/x64/libonnxruntime.so.1 \
 && echo "53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4  package/bin/napi-v6/linux/x64/libonnxruntime.so.1" | sha256sum -c - \
 && mv package/bin/napi-v6/linux/x64/libonnxruntime.so.1 /ort/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates=20250419~deb12u2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin inferstack
COPY --from=ort /ort/libonnxruntime.so.1 /opt/onnxruntime/lib/libonnxruntime.so.1
COPY --from=build /out/inferstack /usr/local/bin/inferstack
ENV INFERSTACK_ORT_LIB=/opt/onnxruntime/lib/libonnxruntime.so.1 \
    INFERSTACK_CACHE=/tmp/inferstack \
    INFERSTACK_DEVICE=cpu
USER 10001:10001
ENTRYPOINT ["inferstack"]
CMD ["worker"]
