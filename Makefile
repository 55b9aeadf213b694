# execconform: conformance suite for Kubernetes exec WebSocket proxies.
GO ?= go
export GOFLAGS ?= -buildvcs=false

.PHONY: conformance conformance-clients test vet fmt-check race variants leak-check reap bench bench-proxies fuzz build e2e-local e2e-kind e2e-cluster provider mutants examples peers peers-check

# The main job: the full matrix against the reference proxy (embedded fake
# API server with real shells; no cluster), then the translating reference
# proxy's (its dialect's cases, over client-go's fallback executor and its
# SPDY executor). Exit 1 when a MUST case fails.
conformance:
	$(GO) run ./cmd/execconform run --out conformance-report
	$(GO) run ./cmd/execconform run --dialect json-operation --quiet
	$(GO) run ./cmd/execconform run --dialect json-operation --executor spdy --quiet
	@$(GO) run ./cmd/execconform reap --check

# The reference proxy's matrix driven by real clients instead of the
# emulator (docs/clients.md): client-go's executors (each session a
# process of its own), a real kubectl on a pty (built from the Go module
# proxy on first use, cached), headless Chromium running a web console's
# JavaScript client. Each runs the cells it can express, its own endings
# included; reports in conformance-report/client-NAME/.
CLIENTS ?= client-go kubectl chromium
conformance-clients:
	@for c in $(CLIENTS); do echo "== --client $$c"; $(GO) run ./cmd/execconform run --client $$c --quiet || exit 1; done
	@$(GO) run ./cmd/execconform reap --check

# Every test: formatting, vet, the race-enabled test suite, then a check of
# the process table that no process our tests started is still alive.
test: fmt-check vet race variants examples provider leak-check

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/
	cd e2e/provider && $(GO) vet ./...

# e2e-provider (the module e2e/provider: kind's Go API and client-go), its
# tests without a cluster.
provider:
	cd e2e/provider && $(GO) test -race -count=1 ./...

race:
	$(GO) run ./cmd/execconform reap
	$(GO) test -race -count=1 -timeout 10m $$($(GO) list ./... | grep -v /docs/examples/)

# Real third-party proxies (kubectl proxy, apimachinery's UpgradeAwareHandler,
# kube-rbac-proxy) through the full matrix, from the separate module peers/
# (its k8s.io libraries pinned to v0.34.4), and Argo CD's web terminal
# through its dialect's matrix, from the module peers/argocd/ (Argo CD
# v3.2.12 pins k8s.io to v0.34.0): regenerates docs/peers/. They are not
# expected to pass; the run fails only if the suite cannot run them.
peers:
	cd peers && $(GO) vet ./... && $(GO) test -count=1 ./...
	cd peers && $(GO) run ./cmd/peers -out ../docs/peers
	cd peers/argocd && $(GO) vet ./... && $(GO) test -count=1 ./...
	cd peers/argocd && $(GO) run ./cmd/argocd -out ../../docs/peers
	@$(GO) run ./cmd/execconform reap --check

# What CI runs of the peers: both modules' vet and tests, which run each
# peer end to end on a case or two (the suite can run them), without the
# full matrices that make peers regenerates docs/peers/ with (about 5
# minutes warm).
peers-check:
	cd peers && $(GO) vet ./... && $(GO) test -count=1 ./...
	cd peers/argocd && $(GO) vet ./... && $(GO) test -count=1 ./...
	@$(GO) run ./cmd/execconform reap --check

# The examples of docs/testing-your-proxy.md, as a proxy maintainer runs
# them (without the race detector, as make conformance).
examples:
	$(GO) test -count=1 ./docs/examples/...
	bash docs/examples/proxy-cmd.sh
	@$(GO) run ./cmd/execconform reap --check

# The broken-variant matrices, without the race detector (under it they are
# skipped: they exercise the suite, not the proxy's concurrency).
variants:
	$(GO) test -count=1 -run 'TestBrokenVariantsAreCaught' ./proxyundertest/
	$(GO) test -count=1 -run 'TestEveryVariantIsKilled|TestPatternsAreTrue|TestTranslatorVariantsAreKilled' ./mutants/

# Every broken variant of the reference proxy against the whole matrix (but
# the load case): which cases kill each, and the mutation score. Exit 1 if a
# variant survives or the reference proxy is killed.
mutants:
	$(GO) run ./cmd/execconform mutants
	@$(GO) run ./cmd/execconform reap --check

leak-check:
	$(GO) run ./cmd/execconform reap --check

# Kill processes left by execconform processes that died (e.g. a test binary killed by a timeout).
reap:
	$(GO) run ./cmd/execconform reap

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# What each proxy costs and how it cleans up at scale (docs/bench.md):
# direct, the reference proxy, the translating reference proxy and the
# peers side by side in one run (keystroke latency, throughput per
# subprotocol, set-up, idle cost, mass drop of 1,000 sessions), then the
# reference proxy's mass drop at the most sessions this machine allows;
# regenerates docs/bench/. A measurement, not a test: not in make test
# (about 17 minutes on 2 cores). BENCH_FLAGS: more flags, e.g. -quick.
BENCH_FLAGS ?=
bench-proxies:
	cd peers && $(GO) run ./cmd/bench -out ../docs/bench -drop-bound 5s $(BENCH_FLAGS)
	@$(GO) run ./cmd/execconform reap --check

# Every fuzz target (PACKAGE:TARGET), fuzzed for FUZZTIME each, one after
# the other: the parsers of what the suite reads from outside (frames,
# statuses, /proc, results.json, the proxy's path and Origin checks). Not
# part of make test, whose go test runs each target's seeds only. One
# worker by default (FUZZFLAGS), and minimisation of new inputs bounded so
# that large ones (results files) do not eat the time. It fails first if a
# Fuzz function is missing from the list, and on any failing input; a bare
# "context deadline exceeded" at the end of FUZZTIME without a failing
# input (Go's fuzzing coordinator missing its own deadline, seen here under
# load) is reported, not failed.
FUZZ_TARGETS = \
	execproto:FuzzDecode execproto:FuzzDecodeFromServer execproto:FuzzParseStatus \
	fakeapiserver:FuzzFrameParser \
	proctable:FuzzParseStat proctable:FuzzStatRoundTrip proctable:FuzzParseEnviron proctable:FuzzParseCmdline \
	proxyundertest:FuzzBackendURL proxyundertest:FuzzCheckOrigin \
	report:FuzzResultsFile
FUZZTIME ?= 20s
FUZZFLAGS ?= -parallel 1 -fuzzminimizetime 5s
fuzz:
	@for f in $$(grep -rlE --include='*_test.go' '^func Fuzz' .); do \
		d=$$(dirname $$f); d=$${d#./}; \
		for fn in $$(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' $$f); do \
			case " $(FUZZ_TARGETS) " in *" $$d:$$fn "*) ;; \
			*) echo "make fuzz: $$d:$$fn is not in FUZZ_TARGETS"; exit 1;; esac; \
		done; \
	done
	@log=$$(mktemp); trap 'rm -f $$log $$log.rc' EXIT; \
	for t in $(FUZZ_TARGETS); do \
		echo "== $${t#*:} ./$${t%%:*}/ for $(FUZZTIME)"; \
		{ $(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./$${t%%:*}/; echo $$? >$$log.rc; } 2>&1 | tee $$log; \
		[ "$$(cat $$log.rc)" = 0 ] && continue; \
		if grep -q '^    context deadline exceeded$$' $$log && ! grep -q 'Failing input written' $$log; then \
			echo "make fuzz: $${t#*:}: Go's fuzzing coordinator missed its own -fuzztime deadline; no failing input, not a finding"; \
			continue; \
		fi; \
		exit 1; \
	done

# The CLI and e2e-provider (for a real cluster: README, "Run against your own cluster").
build:
	$(GO) build -o bin/execconform ./cmd/execconform
	cd e2e/provider && $(GO) build -o ../../bin/e2e-provider .

# End-to-end against a real one-node Kubernetes (etcd, kube-apiserver,
# kubelet, containerd, runc as host processes) in a network namespace of
# its own: the reference proxy, its broken variants and a no-proxy control
# into a real pod, and the fake API server's fidelity (e2e/KNOWN_DIFFERENCES.md).
# Needs root; installs containerd, runc and busybox from Debian and builds
# Kubernetes from the Go module proxy on first use (cached after).
E2E_CACHE ?= $(HOME)/.cache/execconform/e2e
E2E_REPORT_DIR ?= $(CURDIR)/e2e-report
# Which e2e tests (a go test -run regexp), e.g. E2E_TESTS='TestReferenceProxy|TestControlNoProxy'.
E2E_TESTS ?= .
e2e-local:
	@mkdir -p $(E2E_CACHE)/bin $(E2E_REPORT_DIR)
	$(GO) test -c -tags e2e -o $(E2E_CACHE)/bin/e2e.test ./e2e/
	@cd e2e && E2E_REPORT_DIR=$(E2E_REPORT_DIR) $(CURDIR)/scripts/e2e-local.sh run -- \
		$(E2E_CACHE)/bin/e2e.test -test.count=1 -test.timeout=20m -test.run '$(E2E_TESTS)' $(E2E_TESTFLAGS); status=$$?; \
		mkdir -p $(E2E_REPORT_DIR)/local; rm -rf $(E2E_REPORT_DIR)/local/cluster-logs; cp -r /tmp/execconform-e2e/logs $(E2E_REPORT_DIR)/local/cluster-logs 2>/dev/null; \
		cat $(E2E_REPORT_DIR)/local/reference-fidelity.md 2>/dev/null; exit $$status
	@$(GO) run ./cmd/execconform reap --check --all

# The same e2e tests in a new kind cluster (sigs.k8s.io/kind's Go API, in
# the module e2e/provider), deleted at the end whatever happens; results in
# e2e-report/kind/, and e2e-report/fidelity.md puts every provider that ran
# side by side. Needs a Docker engine (yours, or, as root, Debian's docker.io
# started privately). KIND_OFFLINE=1: no registry; the node image is built
# here from Debian packages and the Go module proxy (scripts/kind/).
# KIND_NODE_IMAGE: another node image.
e2e-kind:
	@mkdir -p $(E2E_CACHE)/bin $(E2E_REPORT_DIR)
	$(GO) test -c -tags e2e -o $(E2E_CACHE)/bin/e2e.test ./e2e/
	cd e2e/provider && $(GO) build -o $(E2E_CACHE)/bin/e2e-provider .
	@cd e2e && E2E_REPORT_DIR=$(E2E_REPORT_DIR) $(CURDIR)/scripts/kind/e2e-kind.sh $(E2E_CACHE)/bin/e2e-provider -- \
		$(E2E_CACHE)/bin/e2e.test -test.count=1 -test.timeout=20m -test.run '$(E2E_TESTS)' $(E2E_TESTFLAGS); status=$$?; \
		cat $(E2E_REPORT_DIR)/kind/reference-fidelity.md $(E2E_REPORT_DIR)/fidelity.md 2>/dev/null; exit $$status
	@$(GO) run ./cmd/execconform reap --check --all

# The same e2e tests against any cluster: KUBECONFIG=PATH NAMESPACE=NS
# (IMAGE=busybox:1.36; E2E_PROVIDER_FLAGS for more, e.g. --create-namespace).
# Only our own objects are made in NS (a ServiceAccount that may exec into
# one pod, its Role and RoleBinding, the pod) and all are deleted after;
# shells are counted with /proc inside the pod.
IMAGE ?= busybox:1.36
e2e-cluster:
	@test -n "$(KUBECONFIG)" -a -n "$(NAMESPACE)" || { echo "usage: make e2e-cluster KUBECONFIG=PATH NAMESPACE=NS [IMAGE=busybox:1.36]"; exit 2; }
	@mkdir -p $(E2E_CACHE)/bin $(E2E_REPORT_DIR)
	$(GO) test -c -tags e2e -o $(E2E_CACHE)/bin/e2e.test ./e2e/
	cd e2e/provider && $(GO) build -o $(E2E_CACHE)/bin/e2e-provider .
	@cd e2e && E2E_REPORT_DIR=$(E2E_REPORT_DIR) $(E2E_CACHE)/bin/e2e-provider cluster --kubeconfig $(abspath $(KUBECONFIG)) \
		--namespace $(NAMESPACE) --image $(IMAGE) $(E2E_PROVIDER_FLAGS) -- \
		$(E2E_CACHE)/bin/e2e.test -test.count=1 -test.timeout=30m -test.run '$(E2E_TESTS)' $(E2E_TESTFLAGS); status=$$?; \
		cat $(E2E_REPORT_DIR)/cluster/reference-fidelity.md 2>/dev/null; exit $$status
