# The two set-up commands (see README.md):
#   make demo   run a real VM under s6 on this machine
#   make test   run every test
export PATH := $(PATH):/usr/local/go/bin
export CGO_ENABLED := 0
BIN := bin

.PHONY: all deps build test test-hostimage test-fast bench fuzz demo clean

all: build

deps:
	scripts/install-deps

# Two static binaries, installed side by side.
build:
	go build -trimpath -o $(BIN)/vmsup ./cmd/vmsup
	go build -trimpath -o $(BIN)/vmsup-exec ./cmd/vmsup-exec

# Every test, as root, on the real kernel, s6, virtiofsd and QEMU, then
# the benchmarks one package at a time (they time things) so their
# figures are printed.
test: deps
	go vet ./...
	go vet -tags hostimage ./e2e/hostimage/
	go test -count=1 -timeout 40m ./...
	$(MAKE) fuzz
	go test -count=1 -p 1 -run '^$$' -bench . -benchtime 200x ./...

# Each fuzz target of the config parser for FUZZTIME (plain `go test`
# runs only their seed corpus). A failing input is written to
# config/testdata/fuzz and becomes a seed.
FUZZTIME ?= 30s
fuzz:
	go test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./config
	go test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./config

# Only the host-image tier (README: "The host-image tier"): a
# Spectrum-like host booted under QEMU, the in-guest tests listed.
test-hostimage: deps
	go vet -tags hostimage ./e2e/hostimage/
	go test -count=1 -v -timeout 15m ./e2e/hostimage/

demo: deps build
	scripts/demo

clean:
	rm -rf $(BIN)
