# One entry point for humans and CI. `make test` runs every test tier whose
# components exist; with CI=true a missing component fails the run.
GO      ?= go
PKGS    ?= ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/bootpilot/bootpilot/internal/version.Version=$(VERSION)

.PHONY: run build agent test e2e bench lint clean

run: ## run the server on its embedded defaults (SQLite, self-made CA, HTTPS :8443)
	$(GO) run ./cmd/bootpilot serve

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/bootpilot ./cmd/bootpilot

agent: ## the static agent binary for the ramdisk
	CGO_ENABLED=0 $(GO) build -ldflags "-s -w $(LDFLAGS)" -o bin/bootpilot-agent ./cmd/bootpilot-agent

# -p 1: one package at a time. The firmware tiers boot QEMU (TCG) and share 2
# cores; running packages side by side only trades wall time for flakiness.
test: ## every tier: unit, SQLite + MariaDB, firmware (QEMU + OVMF), verifiers
	$(GO) vet $(PKGS)
	@fmt="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$fmt" ]; then echo "gofmt needed:"; echo "$$fmt"; exit 1; fi
	$(GO) test -count=1 -p 1 -timeout 80m $(PKGS)

e2e: ## only the firmware suite
	$(GO) test -count=1 -timeout 60m -v ./e2e/...

bench: ## benchmarks: boot API over real HTTPS vs a plain Go server, console host list vs the JSON API, ISO builds vs sbsign+xorriso, store
	$(GO) test -run '^$$' -bench BootScript -benchtime 3000x -timeout 60m ./server/
	$(GO) test -run '^$$' -bench HostList -benchtime 20x -timeout 30m ./server/console/
	$(GO) test -run '^$$' -bench . -benchtime 2s -timeout 30m ./internal/store/
	sh imagebuilder/bench/bench.sh 1000

lint:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))"

clean:
	rm -rf bin
