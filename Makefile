# shoal — see README.md. `make run` and `make test` install what they need.
GO      ?= go
PROTOS  := $(shell find sdk/proto -name '*.proto')
BIN     := bin/shoal
export GOFLAGS := -mod=mod

.PHONY: build test lint proto proto-check bench run deps clean

deps:
	@scripts/deps.sh

build:
	$(GO) build -o $(BIN) ./cmd/shoal

test: deps
	$(MAKE) lint
	$(GO) test -race -shuffle=on -timeout 14m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -run TestSDKImportsNoKernel ./sdk/

proto:
	protoc -I sdk/proto -I /usr/include \
	  --plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
	  --plugin=protoc-gen-go-grpc="$$($(GO) tool -n protoc-gen-go-grpc)" \
	  --go_out=sdk/proto --go_opt=paths=source_relative \
	  --go-grpc_out=sdk/proto --go-grpc_opt=paths=source_relative \
	  $(patsubst sdk/proto/%,%,$(PROTOS))

proto-check: deps proto
	@git diff --exit-code -- sdk/proto || { echo "generated code is stale: run make proto"; exit 1; }

bench: deps build
	scripts/bench.sh

run: deps build
	scripts/run.sh

clean:
	rm -rf bin
