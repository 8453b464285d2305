# make test: what CI runs (.ci/run). It installs what the tests need.
GO      ?= go
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BIN     := bin
LDFLAGS := -s -w

# Nine modules, one workspace (go.work). Published: the library at the
# root, its gRPC, Prometheus and controller-runtime integrations in
# pkg/grpcdrain, pkg/metrics and pkg/ctrldrain (so that gRPC, client_golang
# and controller-runtime reach only their importers),
# and the manifest checker in cmd/drainwell (so that k8s.io/api reaches
# neither the library nor the probe). Never published: the example service
# in cmd/app, the process tests and their harness in e2e, the simulated
# cluster in sim, and the release and API tools in tools (docs/layout.md).
PKGS := ./... ./pkg/grpcdrain/... ./pkg/metrics/... ./pkg/ctrldrain/... ./cmd/drainwell/... ./cmd/app/... ./e2e/... ./sim/... ./tools/...
# What compiles controller-runtime and client-go: pkg/ctrldrain and the
# simulator's webhook pod. make proofs tests them: in a fresh clone's make
# test they took a third of the CPU (docs/ci-time.md).
CTRL_PKGS := ./pkg/ctrldrain/... ./sim/webhookpod/...
# make test's packages: the others, the longest tests first (go test
# starts packages in this order).
TEST_PKGS := ./e2e/... ./tools/... ./pkg/grpcdrain/... ./... ./pkg/metrics/... ./cmd/drainwell/... ./cmd/app/... \
	./sim/cluster/... ./sim/rollout/... ./sim/cmd/...

# The published modules' go line is the oldest supported Go. They are
# built and tested with that exact release, from the module proxy
# (golang.org/toolchain), outside the workspace: the library by make test,
# the integrations and the commands (the release check's go install) by
# make proofs. make toolchains-newest tests the library with the newest. The example (cmd/app) and e2e need the repository's own
# Go (go.work's line).
GO_OLDEST := go$(shell awk '/^go /{print $$2}' go.mod)
GO_NEWEST := go1.27.4

# The exported API, recorded with golang.org/x/exp's apidiff: the module's
# public packages, and internal/marker, whose types pkg/probe exports by
# alias (apidiff -m does not look through an alias into an internal package).
MODULE  := github.com/drainwell/drainwell
TOOL_apidiff := golang.org/x/exp/cmd/apidiff@v0.0.0-20261014143641-f0251eb4aa3e
APIDIFF       = $(READ) $(TOOLS)/apidiff
# Each record: FILE:FLAG:PACKAGE[:FOLDER of its module, default the root].
# pkg/ctrldrain's is read on its compilation, so make proofs checks it.
API_RECORD_CTRL := api/ctrldrain.api:-m:$(MODULE)/pkg/ctrldrain:pkg/ctrldrain
API_RECORDS := api/drainwell.api:-m:$(MODULE) api/marker.api:-allow-internal:$(MODULE)/internal/marker \
	api/grpcdrain.api:-m:$(MODULE)/pkg/grpcdrain:pkg/grpcdrain \
	api/metrics.api:-m:$(MODULE)/pkg/metrics:pkg/metrics \
	api/vet.api:-m:$(MODULE)/cmd/drainwell:cmd/drainwell $(API_RECORD_CTRL)
# The same APIs as text a reviewer reads in a diff (tools/apitext): NAME:DIR.
API_TEXT := health:pkg/health healthenv:pkg/healthenv probe:pkg/probe marker:internal/marker grpcdrain:pkg/grpcdrain \
	metrics:pkg/metrics ctrldrain:pkg/ctrldrain vet:cmd/drainwell/vet
APITEXT := ./tools/apitext

.PHONY: test proofs floors deps vet lint gosec toolchains toolchains-newest apicheck api run build clean rollout bench test-envtest release release-check

# The linters and apidiff are built once, without -race, into .cache/bin.
# What they read is compiled with -race, as the tests compile it
# (GOFLAGS reaches the go list they run), so that one compilation of the
# modules and their dependencies serves the tests, vet, the linters and
# apidiff. A cold run compiled everything twice without it.
TOOLS := $(CURDIR)/.cache/bin
READ  := GOFLAGS=-race
# They build with the pods' flags (static, -trimpath), so that they share
# the standard library's compilation with the process tests' binaries.
$(TOOLS)/%: Makefile
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOWORK=off GOFLAGS=-trimpath CGO_ENABLED=0 $(GO) install $(TOOL_$*)

# make test is three jobs at once, at three priorities (nice), as a
# fresh clone's run is bound by the two cores' CPU from start to end:
#
# The rolling-update load profiles (TestRollout), at full priority. Their
# verdicts rest on the prober's ticks and the proxy's dials, so nothing
# may take the CPU they want: below them, the scheduler gives a nice-10
# process about a tenth of a core they want, a nice-19 one 1.5%. They run
# without -race: the pods are built without it, and under it the harness
# (the load, the Service proxies and the kubelet's prober, one process)
# took most of the two cores, so that the prober's 1 s timeouts and the
# proxy's dials failed and flipped endpoints a real cluster would keep
# (docs/tests.md). The harness's own code is raced by sim/cluster's tests.
# They build as the harness builds the pods (static, -trimpath), so that
# the packages the two share compile once.
#
# Every module's tests but pkg/ctrldrain's (TEST_PKGS), with -race and
# every vet check (-vet=all, what make vet runs), at nice 10. Each package is compiled, vetted and tested
# in one pipeline, so that the tests that wait on processes and drains run
# while other packages compile. A separate vet step held every test back
# until the whole compilation was done, and vetted every dependency twice:
# go test's own vet uses other flags, so it shares no cached result with
# go vet's. The longest tests come first in TEST_PKGS (go test starts packages
# in that order), and a running test holds one of go test's -p slots: with
# 3, two long tests leave a slot to the compiler. The test binaries are
# linked without DWARF (-ldflags=-w): stack traces and race reports read
# the symbol table, not DWARF, and the links write less.
#
# The library's run with the oldest Go, the linters and apidiff
# (toolchains, lint, apicheck), at nice 19, one after the other. The
# oldest Go's run goes first, as it shares no compilation with the tests;
# the linters and apidiff then read the tests' compilation.
#
# Their output follows the tests', in that order. The heavier proofs are
# in make proofs, not here (docs/ci-time.md): a fresh clone's make test
# must stay under 10 minutes on a 2-core machine.
test: deps
	@nice -n 19 $(MAKE) --no-print-directory -k --output-sync=target toolchains lint apicheck \
	  LINT_PKGS='$(TEST_PKGS)' API_RECORDS='$(filter-out $(API_RECORD_CTRL),$(API_RECORDS))' > $(BACKGROUND_LOG) 2>&1 & bg=$$!; \
	CGO_ENABLED=0 $(GO) test -vet=off -trimpath -count=1 -run '^TestRollout$$' ./sim/rollout > $(ROLLOUT_LOG) 2>&1 & rollout=$$!; \
	SARIF_SCHEMA=$(SARIF_SCHEMA) nice -n 10 $(GO) test -p 3 -race -vet=all -ldflags=-w -count=1 -skip '^(TestRollout|TestReleaseCheck)$$' $(TEST_PKGS); tests=$$?; \
	wait $$rollout; rollout=$$?; echo "--- TestRollout (beside the tests):"; cat $(ROLLOUT_LOG); \
	wait $$bg; background=$$?; echo "--- make toolchains lint apicheck (beside the tests):"; cat $(BACKGROUND_LOG); \
	[ $$tests = 0 ] && [ $$rollout = 0 ] && [ $$background = 0 ]
ROLLOUT_LOG    := $(CURDIR)/.cache/rollout.log
BACKGROUND_LOG := $(CURDIR)/.cache/background.log

# The SARIF 2.1.0 JSON schema that drainwell vet's output is validated
# against (e2e/deploy TestSARIFSchema), from the npm package of Microsoft's
# SARIF test matchers; the digest pins its content.
SARIF_PKG     := @microsoft/jest-sarif@1.0.0-beta.0
SARIF_SCHEMA  := $(CURDIR)/.cache/sarif-schema-2.1.0.json
SARIF_SHA256  := 2d99159ae54a3eea97f81781cff48780548657c35949f4b7f25e99a2ba4de4f8
$(SARIF_SCHEMA):
	@mkdir -p $(@D) && tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	  (cd $$tmp && npm pack --silent $(SARIF_PKG) >/dev/null && tar xzf *.tgz package/lib/schemas/sarif-2.1.0-rtm.5.json -O > schema.json) && \
	  echo "$(SARIF_SHA256)  $$tmp/schema.json" | sha256sum -c --quiet && mv $$tmp/schema.json $@

# Fails on any change to the exported API until `make api` rewrites the
# record (and CHANGELOG.md says what changed). The root is read outside the
# workspace (there its packages pattern would take in the nested modules);
# the others in it, on the compilation vet made.
apicheck: $(TOOLS)/apidiff
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; fail=0; \
	$(GO) build -o $$tmp/apitext $(APITEXT) || exit 1; \
	for r in $(API_RECORDS); do \
	  file=$(CURDIR)/$${r%%:*}; rest=$${r#*:}; flag=$${rest%%:*}; path=$${rest#*:}; dir=.; \
	  case $$path in *:*) dir=$${path#*:}; path=$${path%%:*};; esac; \
	  work=; [ $$dir = . ] && work=GOWORK=off; \
	  (cd $$dir && env $$work $(APIDIFF) $$flag -w $$tmp/now.api $$path) || exit 1; \
	  diff=$$(cd $$dir && env $$work $(APIDIFF) $$flag $$file $$tmp/now.api 2>/dev/null); \
	  if [ -n "$$diff" ]; then echo "$$path: the exported API differs from $$file:"; echo "$$diff"; fail=1; fi; \
	done; \
	for r in $(API_TEXT); do \
	  name=$${r%%:*}; dir=$${r#*:}; \
	  $$tmp/apitext $$dir $(MODULE)/$$dir > $$tmp/$$name.txt || exit 1; \
	  if ! diff -u api/$$name.txt $$tmp/$$name.txt > $$tmp/diff; then \
	    echo "$$dir: the exported API differs from api/$$name.txt:"; cat $$tmp/diff; fail=1; fi; \
	done; \
	if [ $$fail = 1 ]; then echo "if on purpose: make api, and say what changed in CHANGELOG.md"; exit 1; fi; \
	echo "exported API matches api/"

api: $(TOOLS)/apidiff
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	$(GO) build -o $$tmp/apitext $(APITEXT) || exit 1; \
	for r in $(API_RECORDS); do \
	  file=$(CURDIR)/$${r%%:*}; rest=$${r#*:}; flag=$${rest%%:*}; path=$${rest#*:}; dir=.; \
	  case $$path in *:*) dir=$${path#*:}; path=$${path%%:*};; esac; \
	  work=; [ $$dir = . ] && work=GOWORK=off; \
	  (cd $$dir && env $$work $(APIDIFF) $$flag -w $$file $$path) || exit 1; echo "wrote $$file"; \
	done; \
	for r in $(API_TEXT); do \
	  name=$${r%%:*}; dir=$${r#*:}; \
	  $$tmp/apitext $$dir $(MODULE)/$$dir > api/$$name.txt || exit 1; echo "wrote api/$$name.txt"; \
	done

# The library with the oldest supported Go, its go line. (make proofs:
# the integration modules at their floors, and cmd/drainwell through the
# release check's go install.) Vet ran on the tests' compilation: the
# oldest Go's run compiles and tests only. `make toolchains-newest` tests
# the library with the newest.
toolchains:
	GOWORK=off GOTOOLCHAIN=$(GO_OLDEST) $(GO) test -vet=off -count=1 ./...

# The integration modules with the oldest supported Go, at the versions
# their go.mod require (their floor: pkg/ctrldrain's is controller-runtime
# v0.21.0 and client-go v0.33.0), side by side.
floors:
	@(cd pkg/grpcdrain && GOWORK=off GOTOOLCHAIN=$(GO_OLDEST) $(GO) test -vet=off -count=1 ./...) & a=$$!; \
	(cd pkg/metrics && GOWORK=off GOTOOLCHAIN=$(GO_OLDEST) $(GO) test -vet=off -count=1 ./...) & b=$$!; \
	(cd pkg/ctrldrain && GOWORK=off GOTOOLCHAIN=$(GO_OLDEST) $(GO) test -vet=off -count=1 ./...) & c=$$!; \
	wait $$a; ra=$$?; wait $$b; rb=$$?; wait $$c; rc=$$?; [ $$ra = 0 ] && [ $$rb = 0 ] && [ $$rc = 0 ]

# What a release promises its importers, which make test leaves out to
# stay under 10 minutes from a fresh clone on a 2-core machine
# (docs/ci-time.md); make release runs it. Each compiles our dependencies
# once more, at other versions or with another Go:
#   - pkg/ctrldrain and the simulator's webhook pod: their tests with
#     -race at the workspace's versions, their vet, staticcheck and API
#     record;
#   - floors: the integration modules at their floors, with the oldest Go;
#   - the release check (tools/releasetool TestReleaseCheck): every
#     published module fetched alone at a version from a module proxy,
#     and every command installed with the oldest Go;
#   - the admission profiles in the simulated cluster (TestAdmission, the
#     admission build tag): a controller-runtime webhook pod, called by
#     k8s.io/apiserver's webhook client as three API servers.
proofs: deps floors $(TOOLS)/staticcheck
	$(GO) test -race -vet=all -count=1 $(CTRL_PKGS)
	$(GO) vet -tags admission ./sim/rollout
	$(READ) $(TOOLS)/staticcheck $(CTRL_PKGS)
	$(READ) $(TOOLS)/staticcheck -tags admission ./sim/rollout
	@$(MAKE) --no-print-directory apicheck API_RECORDS='$(API_RECORD_CTRL)' API_TEXT=
	$(GO) test -count=1 -run '^TestReleaseCheck$$' ./tools/releasetool
	CGO_ENABLED=0 $(GO) test -tags admission -vet=off -trimpath -count=1 -run '^TestAdmission$$' ./sim/rollout

toolchains-newest:
	GOWORK=off GOTOOLCHAIN=$(GO_NEWEST) $(GO) test -count=1 ./...

# A real redis-server for the process tests, from Debian's packages.
deps: $(SARIF_SCHEMA)
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }

vet:
	$(GO) vet -race $(PKGS)

# staticcheck on everything (make test: on its packages; make proofs: on
# the rest). gosec on what ships (cmd, pkg,
# internal), where every finding is answered in the code (#nosec with its
# reason, or handled): `make gosec`, before a release and after a change to
# what ships, not in make test: building gosec v2.30.0 (its AI SDKs) took
# 2m41s of a cold CI run's 15 minutes on a 2-core machine.
# e2e/ is test tooling whose job is to run binaries named by variables, as
# gosec's G204 flags, and to write into its own temporary folders;
# internal/testutil is the tests' own helpers (a Close in a cleanup has
# nobody to report to), linked by no binary.
# goreleaser is not in make test: building it alone took over 10 minutes
# on the 2-core CI machine (docs/release.md).
TOOL_goreleaser  := github.com/goreleaser/goreleaser/v2@v2.15.1
TOOL_staticcheck := honnef.co/go/tools/cmd/staticcheck@v0.8.2
TOOL_gosec       := github.com/securego/gosec/v2/cmd/gosec@v2.30.0
LINT_PKGS := $(PKGS)
lint: $(TOOLS)/staticcheck
	$(READ) $(TOOLS)/staticcheck $(LINT_PKGS)

gosec: $(TOOLS)/gosec
	$(READ) $(TOOLS)/gosec -quiet -exclude-dir=internal/testutil ./cmd/... ./pkg/... ./internal/... ./pkg/grpcdrain/... ./pkg/metrics/... ./pkg/ctrldrain/... ./cmd/drainwell/... ./cmd/app/...

run:
	LIVE_FILE=$${LIVE_FILE:-$$(mktemp -d)/live} $(GO) run ./cmd/app

# Every rollout profile and negative control at full length (about 6 minutes),
# with the timeline picture. `make test` runs the short shapes.
rollout: deps
	$(GO) run -tags admission ./sim/cmd/rollout -report rollout.html

# Probe cost, binary sizes, request overhead, drain timings, heartbeat cost and
# the rollout harness's highest zero-loss rate; writes BENCHMARKS.md (a few minutes).
bench: deps
	$(GO) run ./sim/cmd/bench -out BENCHMARKS.md

# The example operator (examples/operator) rolled out against a real
# kube-apiserver and etcd (e2e/envtest): no admission call lost, and the
# stock kubebuilder main, its negative control, must lose some. Not in
# make test: kube-apiserver is built from the module proxy (its first
# build took 17 of the 22 minutes of a cold run on a busy 2-core
# machine; a warm run takes under one), and the run needs etcd.
# etcd is Debian's (etcd-server), linked beside kube-apiserver in
# .cache/bin, where envtest finds both (KUBEBUILDER_ASSETS).
# e2e/envtest/kubeapiserver/go.mod says which Kubernetes.
ETCD := /usr/bin/etcd
test-envtest: $(TOOLS)/kube-apiserver
	@[ -x $(ETCD) ] || { \
	  echo "installing etcd-server"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq etcd-server >/dev/null; }
	@ln -sf $(ETCD) $(TOOLS)/etcd
	cd e2e/envtest && KUBEBUILDER_ASSETS=$(TOOLS) GOWORK=off $(GO) test -count=1 -v -timeout 20m ./...

# Built once; again only when its go.mod changes. It reports its version
# as Kubernetes' own build stamps it (/version, the log).
KUBE_VERSION := $(shell awk '$$1 == "k8s.io/kubernetes" {print $$2}' e2e/envtest/kubeapiserver/go.mod)
KUBE_STAMP   := $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,-X $(p).gitVersion=$(KUBE_VERSION) \
	-X $(p).gitMajor=$(word 2,$(subst ., ,$(KUBE_VERSION:v%=x.%))) -X $(p).gitMinor=$(word 3,$(subst ., ,$(KUBE_VERSION:v%=x.%))))
$(TOOLS)/kube-apiserver: e2e/envtest/kubeapiserver/go.mod
	@mkdir -p $(@D)
	cd e2e/envtest/kubeapiserver && GOWORK=off GOFLAGS= CGO_ENABLED=0 $(GO) build -ldflags='$(KUBE_STAMP)' -o $@ k8s.io/kubernetes/cmd/kube-apiserver

# Static, stripped binaries for each platform: bin/linux-amd64/, bin/linux-arm64/.
PLATFORMS := linux/amd64 linux/arm64
build:
	@for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; echo "$(BIN)/$$os-$$arch: app probe probe-tls"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags='$(LDFLAGS)' -o $(BIN)/$$os-$$arch/ ./cmd/app ./cmd/probe ./cmd/probe-tls || exit 1; \
	done

clean:
	rm -rf $(BIN)

# Cuts release VERSION (make release VERSION=v0.1.0): the release commit
# (every require of our modules at VERSION, CHANGELOG's Unreleased under
# VERSION), checked by make test and make proofs, then the tags to push,
# all at once.
# A published version is never moved: a tag that exists stops it.
release:
	@case "$(VERSION)" in v[0-9]*.[0-9]*.[0-9]*) ;; *) echo "usage: make release VERSION=vX.Y.Z"; exit 2;; esac
	@test -z "$$(git status --porcelain)" || { echo "release: the working tree is not clean"; exit 1; }
	@for tag in $$($(GO) run ./tools/releasetool tags $(VERSION) | sed -n 's/^git tag .* //p'); do \
	  if git rev-parse -q --verify "refs/tags/$$tag" >/dev/null; then echo "release: tag $$tag exists: a published version is never moved"; exit 1; fi; \
	done
	$(GO) run ./tools/releasetool prepare $(VERSION)
	$(MAKE) gosec test proofs
	git commit -qam "Release $(VERSION)"
	@$(GO) run ./tools/releasetool tags $(VERSION)

# The release's binaries and images, from this commit, into dist/: goreleaser
# checks .goreleaser.yaml and builds a snapshot (archives, checksums.txt),
# then releasetool makes the probes' OCI images (dist/images) from its
# binaries and prints their digests.
# Every date in them is the commit's (SOURCE_DATE_EPOCH, SOURCE_DATE):
# the same commit builds the same bytes.
release-check: $(TOOLS)/goreleaser
	$(TOOLS)/goreleaser check
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) SOURCE_DATE=$$(git log -1 --format=%cI) \
	  $(TOOLS)/goreleaser release --snapshot --clean
	$(GO) run ./tools/releasetool images dist
	cat dist/checksums.txt
