# shoal — see README.md. `make run` and `make test` install what they need.
GO      ?= go
PROTOS  := $(shell find sdk/proto -name '*.proto')
export GOFLAGS := -mod=mod

.PHONY: build images test lint proto proto-check bench run deps clean

deps:
	@scripts/deps.sh

# The shoal binary and the plugins that ship with it, side by side: the
# agent finds a bundled plugin next to itself when the config names no path.
build:
	$(GO) build -o bin/ ./cmd/shoal ./plugins/...

# The example service's image (README, make run): examples/hello packed as an
# OCI image tar, twice (versions 1 and 2, for `service update --image`), and
# hello:health with a HEALTHCHECK (`hello health`, every 2s). No
# registry is needed: `shoal image import` loads them into the node.
images:
	@mkdir -p build/images
	$(GO) run ./internal/mkimage -name shoal.local/hello:1 -env HELLO_VERSION=1 -o build/images/hello-1.tar ./examples/hello
	$(GO) run ./internal/mkimage -name shoal.local/hello:2 -env HELLO_VERSION=2 -o build/images/hello-2.tar ./examples/hello
	$(GO) run ./internal/mkimage -name shoal.local/hello:health -env HELLO_VERSION=1 -health-cmd /prog -health-cmd health -health-interval 2s -o build/images/hello-health.tar ./examples/hello

# The tests that start whole clusters of processes (real Raft timing, real
# containers, network namespaces) run after the others and one package at a
# time: on a 2-core machine, sharing the CPU with the rest of the tests
# stretched their elections past their bounds.
SYSTEM_TESTS := ./kernel/clustertest/ ./kernel/e2etest/ ./kernel/netnstest/
test: deps
	$(MAKE) lint proto-check
	$(GO) test -race -shuffle=on -timeout 14m $$($(GO) list ./... | grep -v -e /kernel/clustertest -e /kernel/e2etest -e /kernel/netnstest)
	$(GO) test -race -shuffle=on -timeout 14m -p 1 $$(for d in $(SYSTEM_TESTS); do [ -d $$d ] && echo $$d; done)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -run TestSDKImportsNoKernel ./sdk/
	@# Plugins, and the examples plugin authors copy, build outside this
	@# repository: they may import sdk/, never kernel/.
	@for d in plugins examples; do \
	  [ -d $$d ] || continue; \
	  deps=$$($(GO) list -deps ./$$d/...) || exit 1; \
	  bad=$$(echo "$$deps" | grep '^github.com/shoalhq/shoal/kernel/'); \
	  if [ -n "$$bad" ]; then echo "$$d/ must not depend on kernel/ (use or extend sdk/); it depends on:"; echo "$$bad"; exit 1; fi; \
	done

# protoc with the generators pinned as go.mod tool lines; OUT is where the
# generated code goes (proto-check generates into a scratch directory). The
# Python scheduler plugin's stubs go to PYOUT, made by Debian's
# python3-grpc-tools for Debian's python3 (by its path: a python3 earlier on
# PATH may lack the packages).
OUT ?= sdk/proto
PYPLUGIN := examples/scheduler-python
PYOUT ?= $(PYPLUGIN)/gen
PYPROTOS := shoal/object/v1/object.proto shoal/scheduler/v1/scheduler.proto grpc_health/v1/health.proto
proto:
	@mkdir -p $(OUT) $(PYOUT)
	protoc -I sdk/proto -I /usr/include \
	  --plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
	  --plugin=protoc-gen-go-grpc="$$($(GO) tool -n protoc-gen-go-grpc)" \
	  --go_out=$(OUT) --go_opt=paths=source_relative \
	  --go-grpc_out=$(OUT) --go-grpc_opt=paths=source_relative \
	  $(patsubst sdk/proto/%,%,$(PROTOS))
	/usr/bin/python3 -m grpc_tools.protoc -I sdk/proto -I $(PYPLUGIN)/proto -I /usr/include \
	  --python_out=$(PYOUT) --grpc_python_out=$(PYOUT) $(PYPROTOS)

proto-check: deps
	@tmp=$$(mktemp -d) && $(MAKE) -s proto OUT=$$tmp/go PYOUT=$$tmp/py && \
	  for f in $$(cd $$tmp/go && find . -name '*.go'); do \
	    cmp -s $$tmp/go/$$f sdk/proto/$$f || { echo "stale generated code: sdk/proto/$$f (run make proto)"; rm -rf $$tmp; exit 1; }; \
	  done; \
	  for f in $$(cd $$tmp/py && find . -name '*.py'); do \
	    cmp -s $$tmp/py/$$f $(PYPLUGIN)/gen/$$f || { echo "stale generated code: $(PYPLUGIN)/gen/$$f (run make proto)"; rm -rf $$tmp; exit 1; }; \
	  done; \
	  extra=$$(cd sdk/proto && find . -name '*.pb.go' | while read f; do [ -f $$tmp/go/$$f ] || echo $$f; done); \
	  rm -rf $$tmp; [ -z "$$extra" ] || { echo "generated code without a .proto: $$extra"; exit 1; }

bench: deps build
	scripts/bench.sh

run: deps build images
	scripts/run.sh

clean:
	rm -rf bin build
