# The gpu tier's worker: inferstack with cgo on NVIDIA's CUDA 12 + cuDNN 9
# runtime, with ONNX Runtime 1.24.4's GPU release (CUDA 12, cuDNN 9; the last
# 1.24 release built for CUDA 12, and the C API 24 that onnxruntime_go v1.27
# needs) whose provider libraries (libonnxruntime_providers_cuda.so,
# _shared.so) sit beside libonnxruntime.so, where ORT looks for them. Device
# auto: CUDA, or the CPU with the reason in each manifest.
# The release is pinned by its sha256 (the same pin a public build script
# verifies its download against). Build from the repository root:
#   docker build -f images/gpu.Dockerfile -t inferstack-worker:gpu .

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags "-s -w" -o /out/inferstack ./cmd/inferstack

FROM debian:bookworm-slim AS ort
ARG ORT_VERSION=1.24.4
ARG ORT_GPU_SHA256=c5f804ff5d239b436fa59e9f2fb288a39f7eb9552f6a636c8b71e792e91a8808
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates=20250419~deb12u2 curl=7.88.1-10+deb12u15 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /ort
RUN curl -fsSLo ort.tgz "https://github.com/microsoft/onnxruntime/releases/download/v${ORT_VERSION}/onnxruntime-linux-x64-gpu-${ORT_VERSION}.tgz" \
 && echo "${ORT_GPU_SHA256}  ort.tgz" | sha256sum -c - \
 && tar -xzf ort.tgz --strip-components=2 --wildcards "*/lib/libonnxruntime*.so*"

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin inferstack
COPY --from=ort /ort/ /opt/onnxruntime/lib/
COPY --from=build /out/inferstack /usr/local/bin/inferstack
ENV INFERSTACK_ORT_LIB=/opt/onnxruntime/lib/libonnxruntime.so.1 \
    INFERSTACK_CACHE=/tmp/inferstack \
    INFERSTACK_DEVICE=auto \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
ENTRYPOINT ["inferstack"]
CMD ["worker"]
