# Developer entry points. `make test` is the project's test command: CI runs it (.ci/run).

GO         ?= go
GOFMT      ?= gofmt
FUZZTIME   ?= 30s
BENCH_OUT  ?= bench.out
COVER_OUT  ?= coverage.out

# bash with pipefail, so a command piped into tee still fails the target when it fails.
SHELL       := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

.PHONY: test lint fmt-check vet bench bench-go demo fuzz cover jaeger chaos

# The whole suite, as CI runs it: the linters (formatting, vet, staticcheck), the Jaeger
# binary the tracing tests run, then every test with the race detector. The tests build
# with the necro_failpoint tag, which arms the Redis store's crash points for the fault
# tests; production builds never carry it.
TEST_TAGS ?= necro_failpoint
test: lint bin/jaeger
	$(GO) test -race -count=1 -tags $(TEST_TAGS) -timeout 30m ./...

# Jaeger for the tests (internal/jaegertest starts it). It comes from tools/jaeger, a
# module of its own so that Jaeger's dependencies stay out of necro's go.mod, and is
# rebuilt only when that module's go.mod or go.sum changes. The first build takes
# minutes. go build leaves an up-to-date binary untouched, hence the touch.
jaeger: bin/jaeger

bin/jaeger: tools/jaeger/go.mod tools/jaeger/go.sum
	cd tools/jaeger && $(GO) build -o ../../bin/jaeger github.com/jaegertracing/jaeger/cmd/jaeger
	touch $@

# gofmt -l lists the files whose formatting differs; any output fails the check.
# testdata/ may hold deliberately odd Go files, so it is left out.
fmt-check:
	@unformatted="$$($(GOFMT) -l . 2>&1 | grep -v '/testdata/' || true)"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w on them):"; \
		echo "$$unformatted"; \
		exit 1; \
	fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags $(TEST_TAGS) ./...

# The linters CI runs (make test runs them first): gofmt, go vet and staticcheck, with
# and without the test tag, and gocyclo, which fails a library function (not a test, not
# a program under cmd/, examples/ or tools/) of cyclomatic complexity over 20. Both
# tools are installed into bin/ at pinned versions when missing; the first install
# takes a minute.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := bin/staticcheck-$(STATICCHECK_VERSION)
GOCYCLO_VERSION ?= v0.6.0
GOCYCLO := bin/gocyclo-$(GOCYCLO_VERSION)
lint: fmt-check vet $(STATICCHECK) $(GOCYCLO)
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags $(TEST_TAGS) ./...
	@over="$$($(GOCYCLO) -over 20 -ignore '_test\.go$$|^(cmd|examples|tools)/' .)"; \
	if [ -n "$$over" ]; then \
		echo "gocyclo: these library functions are over cyclomatic complexity 20; split them:"; \
		echo "$$over"; \
		exit 1; \
	fi

$(STATICCHECK):
	mkdir -p bin
	GOBIN=$(CURDIR)/bin/.staticcheck $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv bin/.staticcheck/staticcheck $@
	rmdir bin/.staticcheck

$(GOCYCLO):
	mkdir -p bin
	GOBIN=$(CURDIR)/bin/.gocyclo $(GO) install github.com/fzipp/gocyclo/cmd/gocyclo@$(GOCYCLO_VERSION)
	mv bin/.gocyclo/gocyclo $@
	rmdir bin/.gocyclo

# The benchmark suite (cmd/necro-bench), about 3½ minutes: memory and Redis, chain and
# fanout, tracing off and sampled at 1% into a Jaeger of its own; throughput, latency at
# half the maximum rate, peak RSS, and the RSS of 5 million events with 1% failing. It
# measures necro-actors built as a user builds it, starts its own redis-server and
# Jaeger on loopback ports, and writes a Markdown report to stdout and $(BENCH_OUT).
# BENCHMARKS.md holds the latest figures.
bench: bin/jaeger
	$(GO) build -o bin/necro-actors ./cmd/necro-actors
	$(GO) run ./cmd/necro-bench --necro-actors bin/necro-actors --jaeger bin/jaeger --out $(BENCH_OUT)

# The go test benchmarks of every package (-run='^$$' skips the tests), kept in
# $(BENCH_GO_OUT).
BENCH_GO_OUT ?= bench-go.out
bench-go:
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./... | tee $(BENCH_GO_OUT)

# The fault-injection harness's full tier (cmd/necro-chaos): every scenario at the
# issue's sizes and durations, about 5 minutes. CI runs the short tier inside `make
# test` (cmd/necro-chaos's TestShortTier). RELIABILITY.md holds the latest figures.
CHAOS_OUT ?= chaos
chaos:
	$(GO) run ./cmd/necro-chaos --tier full -v --json $(CHAOS_OUT).json --markdown $(CHAOS_OUT).md

demo:
	$(GO) run ./examples/quickstart

# Runs every Fuzz target of every package for FUZZTIME each (go test -fuzz takes one
# target in one package at a time). `go test -list` prints a package's matching names
# before its "ok" line, which is how each name is paired with its package.
fuzz:
	@targets="$$($(GO) test -list '^Fuzz' ./... | awk '/^Fuzz/ { names[n++] = $$1 } /^ok/ { for (i = 0; i < n; i++) print $$2, names[i]; n = 0 }')"; \
	if [ -z "$$targets" ]; then echo "no fuzz targets"; exit 0; fi; \
	while read -r -u 3 pkg name; do \
		echo "== $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) "$$pkg"; \
	done 3<<< "$$targets"

# Coverage of every package by the whole suite; `go tool cover -html=$(COVER_OUT)` shows it.
cover:
	$(GO) test -count=1 -covermode=atomic -coverpkg=./... -coverprofile=$(COVER_OUT) ./...
	$(GO) tool cover -func=$(COVER_OUT) | tail -n 1
