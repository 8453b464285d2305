# make test: what CI runs (.ci/run). It installs what the tests need.
GO      ?= go
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BIN     := bin
LDFLAGS := -s -w

.PHONY: test deps vet lint run build clean rollout bench

test: deps vet lint
	$(GO) test -race -count=1 ./...

# A real redis-server for the process tests, from Debian's packages.
deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }
	$(GO) mod download

vet:
	$(GO) vet ./...

# staticcheck on everything; gosec on what ships (cmd, pkg, internal), where
# every finding is answered in the code (#nosec with its reason, or handled).
# e2e/ is test tooling whose job is to run binaries named by variables, as
# gosec's G204 flags, and to write into its own temporary folders.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOSEC       := github.com/securego/gosec/v2/cmd/gosec@v2.30.0
lint:
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(GOSEC) -quiet ./cmd/... ./pkg/... ./internal/...

run:
	$(GO) run ./cmd/app

# Every rollout profile and negative control at full length (about 6 minutes),
# with the timeline picture. `make test` runs the short shapes.
rollout: deps
	$(GO) run ./e2e/rollout -report rollout.html

# Probe cost, binary sizes, request overhead, drain timings, heartbeat cost and
# the rollout harness's highest zero-loss rate; writes BENCHMARKS.md (a few minutes).
bench: deps
	$(GO) run ./e2e/bench -out BENCHMARKS.md

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='$(LDFLAGS)' -o $(BIN)/ ./cmd/app ./cmd/probe

clean:
	rm -rf $(BIN)
