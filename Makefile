# inferstack: every command the README shows is a target here; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CACHE ?= $(or $(INFERSTACK_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/inferstack)
export INFERSTACK_CACHE := $(CACHE)
BIN := bin
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(CACHE)/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)
DEMO_DIR := out/demo
# Lambda runs the dispatch function on Graviton (arm64) unless told otherwise.
DISPATCH_ARCH ?= arm64
BENCH_OUT := out/bench.txt

# Pure-Go packages get the race detector; the cgo engine packages too, since
# their tests are short (the race runtime does not slow ONNX Runtime itself).
RACE_PKGS := ./...

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: ## fetch the pinned ONNX Runtime library and test model into the cache (idempotent)
	@scripts/setup.sh

.PHONY: build
build: ## build bin/inferstack, bin/inferstack-demo and dist/dispatch/bootstrap.zip
	go build -trimpath -o $(BIN)/ ./cmd/...
	@mkdir -p dist/dispatch
	CGO_ENABLED=0 GOOS=linux GOARCH=$(DISPATCH_ARCH) go build -tags lambda.norpc -trimpath \
		-ldflags "-s -w -buildid=" -o dist/dispatch/bootstrap ./functions/dispatch/bootstrap
	go run ./scripts/lambdazip dist/dispatch/bootstrap dist/dispatch/bootstrap.zip
	@sha256sum dist/dispatch/bootstrap.zip

.PHONY: demo
demo: setup build ## run the quick-start job: find planted events in a 64 MiB signal
	@$(BIN)/inferstack-demo prepare $(DEMO_DIR)
	@echo "demo: $(BIN)/inferstack run --model $(DEMO_DIR)/detector.onnx --input $(DEMO_DIR)/signal.npy --window 256 --hop 256 --output $(DEMO_DIR)/result"
	@$(BIN)/inferstack run --model $(DEMO_DIR)/detector.onnx --input $(DEMO_DIR)/signal.npy --window 256 --hop 256 --output $(DEMO_DIR)/result
	@$(BIN)/inferstack-demo report $(DEMO_DIR) $(DEMO_DIR)/result

.PHONY: local-stack
local-stack: setup-test demo build ## run the whole stack on this machine (moto, dispatch under the Lambda emulator, scaled workers)
	go build -tags lambda.norpc -o $(BIN)/bootstrap-local ./functions/dispatch/bootstrap
	$(BIN)/inferstack local up --stack dev

.PHONY: test
test: setup-test ## run every test (race detector on), against the real ONNX Runtime, moto and the Lambda emulator

	go test -race -count=1 $(RACE_PKGS)

.PHONY: setup-test
setup-test: ## setup plus what only tests need (an old ORT, the Lambda emulator, the Pulumi CLI)
	@scripts/setup.sh --test

.PHONY: lint
lint: $(GOLANGCI_LINT) ## go vet, golangci-lint, and hadolint on images/ where installed
	go vet ./...
	$(GOLANGCI_LINT) run ./...
	@if command -v hadolint >/dev/null; then hadolint images/*.Dockerfile; else echo "lint: hadolint not installed, images/ not linted"; fi

.PHONY: images
images: ## build the worker images locally where a Docker engine runs (pulumi up builds and pushes the deployed ones)
	docker build -f images/cpu.Dockerfile -t inferstack-worker:cpu .
	docker build -f images/gpu.Dockerfile -t inferstack-worker:gpu .

$(GOLANGCI_LINT):
	@mkdir -p $(CACHE)/tools
	GOBIN=$(CACHE)/tools/tmp go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(CACHE)/tools/tmp/golangci-lint $@ && rmdir $(CACHE)/tools/tmp

.PHONY: bench
bench: setup-test ## run the benchmarks and write $(BENCH_OUT) (see docs/benchmarks.md)
	@mkdir -p $(dir $(BENCH_OUT))
	@# Micro-benchmarks at Go's default benchtime; the side-by-side ones run
	@# their own alternating rounds once.
	{ go test -run '^$$' -bench 'ToFloat32|ReadHeader|Decode|Handle' -count 1 ./inference/... ./functions/... && \
	  go test -run '^$$' -bench 'EngineVsBareORT|CalibrationGain|FixedCosts|PeakRSS|TableVsNpy|TablePeakRSS' -benchtime 1x -count 1 ./inference/ && \
	  go test -run '^$$' -bench 'InvokeUnderEmulator' -benchtime 5x -count 1 ./functions/dispatch/ && \
	  go test -run '^$$' -bench 'Preview' -benchtime 5x -count 1 ./tests/ && \
	  go test -run '^$$' -bench 'JobOverhead|WorkerVsRun' -benchtime 10x -count 1 ./worker/ && \
	  go test -run '^$$' -bench 'InputThroughShapedProxy' -benchtime 3x -count 1 ./worker/ && \
	  go test -run '^$$' -bench 'WorkerPeakRSSLargeOutput|WorkerThreads' -benchtime 1x -count 1 ./worker/ && \
	  go test -run '^$$' -bench 'ShardsOnTwoWorkers' -benchtime 5x -count 1 ./worker/ && \
	  go test -run '^$$' -bench 'CalibrationGainAsProcesses' -benchtime 1x -count 1 -v -timeout 60m ./cmd/inferstack/ && \
	  go test -run '^$$' -bench 'LocalStackLatency' -benchtime 10x -count 1 ./e2e/; } | tee $(BENCH_OUT)

.PHONY: docs
docs: setup-test ## re-record the scaling timeline plot in docs/ from a real run
	INFERSTACK_WRITE_DOCS=1 go test -count=1 -run Scaler ./e2e/

.PHONY: fuzz
fuzz: ## fuzz the .npy header parser for a minute
	go test -run '^$$' -fuzz FuzzReadHeader -fuzztime 60s ./inference/npy/

.PHONY: proto
proto: ## regenerate internal/onnxpb from Debian's onnx.proto (apt-get install libonnx-dev protobuf-compiler)
	GOBIN=$(CACHE)/tools go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	PATH=$(CACHE)/tools:$$PATH protoc -I/usr/include --go_out=. --go_opt=module=github.com/inferstack/inferstack \
		--go_opt=Monnx/onnx.proto=github.com/inferstack/inferstack/internal/onnxpb onnx/onnx.proto

.PHONY: clean
clean: ## remove build outputs (the cache stays)
	rm -rf $(BIN) out dist
