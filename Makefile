# The two set-up commands (see README.md):
#   make demo   run a real VM under s6 on this machine
#   make test   run every test
export PATH := $(PATH):/usr/local/go/bin
export CGO_ENABLED := 0
BIN := bin

.PHONY: all deps build test test-hostimage test-long bench-100 bench-1000 bench-virtiofs test-fast bench fuzz demo clean

all: build

deps:
	scripts/install-deps

# Two static binaries, installed side by side.
# go build stamps the VCS revision itself, except in a git worktree.
REVISION := $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -modified)
build:
	go build -trimpath -buildvcs=auto -ldflags "-X main.revision=$(REVISION)" -o $(BIN)/vmsup ./cmd/vmsup
	go build -trimpath -o $(BIN)/vmsup-exec ./cmd/vmsup-exec

# Every test, as root, on the real kernel, s6, virtiofsd and QEMU (the
# fault matrix on its own, verbose, so that its counts of cells and
# iterations are printed), then the benchmarks one package at a time
# (they time things) so their figures are printed; at the end the
# harness's parent directories, which must be empty by then
# (scripts/clean-test-parents).
# BenchmarkVMMExitToExit starts a VM per iteration and BenchmarkManyVMs
# starts its VMs once, so they get counts of their own.
test: deps
	go vet ./...
	go vet -tags hostimage ./e2e/hostimage/
	go test -count=1 -timeout 40m -skip 'TestFaultMatrix' ./...
	go test -count=1 -timeout 40m -run 'TestFaultMatrix' -v ./e2e/
	$(MAKE) fuzz
	go test -count=1 -p 1 -run '^$$' -bench . -skip 'BenchmarkVMMExitToExit|BenchmarkManyVMs|BenchmarkVirtiofsIO' -benchtime 200x ./...
	go test -count=1 -run '^$$' -bench 'BenchmarkVMMExitToExit' -benchtime 30x ./supervisor/
	go test -count=1 -run '^$$' -bench 'BenchmarkManyVMs' -benchtime 1x ./supervisor/
	$(MAKE) bench-virtiofs
	scripts/clean-test-parents

# The fault matrix with 200 randomised iterations a cell (10 for the
# cells with a real QEMU), each cell bounded to 5 minutes: about 16
# minutes here (4840 iterations).
test-long: deps
	VMSUP_FAULT_ITER=200 VMSUP_FAULT_QEMU_ITER=10 VMSUP_FAULT_BUDGET=5m \
		go test -count=1 -timeout 150m -run 'TestFaultMatrix' -v ./e2e/
	scripts/clean-test-parents

# Guest file I/O through the Rust virtiofsd under vmsup against it started
# directly, interleaved (VMSUP_BENCH_VIRTIOFS_ROUNDS, default 3).
bench-virtiofs: deps
	go test -count=1 -timeout 60m -run '^$$' -bench 'BenchmarkVirtiofsIO' -benchtime 1x ./e2e/
	scripts/clean-test-parents

# 100 VMs with 3 services each, started and stopped together (after the
# CPU floor: one VM at a time).
bench-100: deps
	VMSUP_BENCH_VMS=100 go test -count=1 -timeout 30m -run '^$$' -bench 'BenchmarkManyVMs' -benchtime 1x ./supervisor/
	scripts/clean-test-parents

# The same with 100 and then 1,000 VMs, and the growth from one to the
# other: about 6 minutes here. With VMSUP_BENCH_PERF=DIR it also records
# each stop with perf (scripts/perf-stop reads the files).
bench-1000: deps
	VMSUP_BENCH_VMS=100,1000 go test -count=1 -timeout 60m -run '^$$' -bench 'BenchmarkManyVMs' -benchtime 1x ./supervisor/
	scripts/clean-test-parents

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
