# Elemta: build a binary with the plugins chosen in plugins.yaml, run it, test it.
GO        ?= go
VARIANT   ?=
BIN       := bin/elemta$(if $(VARIANT),-$(VARIANT))
TESTENV   := tools/testenv
BENCHTIME ?= 1s

FUZZTIME  ?= 5s

.PHONY: bench-postfix bench-postfix-signed all generate check-generate build variants run test test-unit testenv testenv-stop testenv-redis-ha test-redis-ha bench fuzz fuzz-long fmt vet clean

all: build

## generate: rewrite gen/ from plugins.yaml
generate:
	$(GO) generate ./gen/...

## check-generate: fail if gen/ is not what plugins.yaml says
check-generate: generate
	@git diff --exit-code -- gen/ && test -z "$$(git status --porcelain -- gen/)" || \
	  { git status --porcelain -- gen/; echo "gen/ is out of date: run 'make generate' and commit"; exit 1; }

## build: bin/elemta (or bin/elemta-$(VARIANT)) with the plugins of plugins.yaml
build:
ifeq ($(VARIANT),)
	$(GO) build -o $(BIN) ./cmd/elemta
else
	$(GO) run ./tools/elemta-build -config plugins.yaml -variant $(VARIANT) -o $(BIN)
endif

## variants: build every variant named in plugins.yaml (bin/elemta-<variant>);
## PLATFORMS=linux/amd64,linux/arm64 cross-compiles (bin/elemta-<variant>-<os>-<arch>).
## The builder itself is always built for this machine (GOOS/GOARCH are
## cleared for `go run` and passed on as the target instead).
PLATFORMS ?= $(if $(GOOS)$(GOARCH),$(or $(GOOS),$(shell $(GO) env GOHOSTOS))/$(or $(GOARCH),$(shell $(GO) env GOHOSTARCH)))
variants:
	GOOS= GOARCH= $(GO) run ./tools/elemta-build -config plugins.yaml -all-variants -o bin/ $(if $(PLATFORMS),-platform $(PLATFORMS))

## run: the main job on the embedded default config: scan the example
## messages offline, then serve SMTP on 127.0.0.1:2525, send them with
## `elemta send` and show where they landed (examples/demo.sh). One example
## (an .exe attachment) is meant to be rejected, so the scan's exit status
## must be 2 (reject); anything else is a failure.
run: build
	@mkdir -p var
	@./$(BIN) scan examples/messages/*.eml; rc=$$?; \
	  test $$rc -eq 2 || { echo "make run: expected exit 2 (invoice-exe-attachment.eml is rejected), got $$rc"; exit 1; }
	@examples/demo.sh ./$(BIN)

## testenv: install and start clamd, rspamd, redis and unbound on loopback
testenv:
	$(TESTENV)/start.sh

testenv-stop:
	$(TESTENV)/stop.sh

## testenv-redis-ha: also start the Sentinel setup, the 3-master Cluster and the TLS Redis (tools/testenv/redis-ha.sh)
testenv-redis-ha: testenv
	$(TESTENV)/redis-ha.sh start

## test-redis-ha: the tests that use them: the store on each, the shared result cache, two `elemta serve` nodes
test-redis-ha: testenv-redis-ha
	. $${ELEMTA_TESTENV_DIR:-./.testenv}/env.sh && $(GO) test -race -count=1 -timeout 10m -p 1 \
	  ./pkg/store/... ./pkg/resultcache/... ./plugins/clamav/... ./internal/multinode/...

## test: vet, then every test under the race detector against the test services
test: testenv vet
	. $${ELEMTA_TESTENV_DIR:-./.testenv}/env.sh && $(GO) test -race -count=1 -timeout 15m ./...

## test-unit: the tests that need no service (integration tests skip)
test-unit: vet
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

## bench: every benchmark, figures for BENCHMARKS.md
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

## bench-postfix: elemta serve and a private Postfix side by side under
## smtp-source (Maildir delivery on both): msgs/s and CPU s per 1,000 msgs
## (SESSIONS, MSGS, SIZE, PF_PORT, EL_PORT: see tools/bench-postfix/run.sh)
bench-postfix: build
	tools/bench-postfix/run.sh $(BIN)

## bench-postfix-signed: the same on a DKIM-signed corpus (tools/bench-postfix/signedsrc)
## with Elemta's spf, dkim, dmarc and authres on, resolving through the test
## unbound (make testenv); fails unless Elemta's copies carry dkim=pass and dmarc=pass
bench-postfix-signed: build
	tools/bench-postfix/run-signed.sh $(BIN)

## fuzz: every Go fuzz target (each `func FuzzX` in a *_test.go), one after
## the other for FUZZTIME each (go test runs one target per -fuzz); a
## failing input is written to the package's testdata/fuzz/FuzzX/
fuzz:
	@set -e; git grep -l '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' -- '*_test.go' | while read -r file; do \
	  dir=./$$(dirname "$$file"); \
	  for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$$file"); do \
	    echo "fuzz: $$dir $$name ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$dir" > /tmp/elemta-fuzz.$$$$ 2>&1 || \
	      { cat /tmp/elemta-fuzz.$$$$; rm -f /tmp/elemta-fuzz.$$$$; exit 1; }; \
	  done; \
	done; rm -f /tmp/elemta-fuzz.$$$$

## fuzz-long: every fuzz target for 10 minutes
fuzz-long:
	$(MAKE) fuzz FUZZTIME=10m

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin var
