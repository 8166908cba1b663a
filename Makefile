# banger — build, test, install. `make help` lists the targets.
PREFIX ?= $(HOME)/.local
CARGO ?= cargo
CARGO_FLAGS ?= -j2 --locked
BINDIR := $(PREFIX)/bin
LIBDIR := $(PREFIX)/lib/banger

# Debian packages: for building, for the test suite, for benchmarks.
BUILD_DEBS := build-essential pkg-config ca-certificates
TEST_DEBS := curl procps
BENCH_DEBS := hyperfine python3

.PHONY: help deps test-deps build test install uninstall quickstart bench bench-status fmt clippy clean check-cargo

help:
	@echo "make quickstart   install system packages, build, start the daemon and show its status"
	@echo "make build        build target/release/{banger,bangerd}"
	@echo "make test         install test packages, run every test"
	@echo "make install      install binaries to PREFIX/bin and the runtime bundle to PREFIX/lib/banger (PREFIX=$(PREFIX))"
	@echo "make bench        run the benchmarks reported in README.md"

check-cargo:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust >= 1.95 (rustup), then retry" >&2; exit 1; }

deps:
	scripts/apt-deps.sh $(BUILD_DEBS)

test-deps: deps
	scripts/apt-deps.sh $(TEST_DEBS)

build: check-cargo deps
	$(CARGO) build --release $(CARGO_FLAGS) -p banger

test: check-cargo test-deps
	$(CARGO) test $(CARGO_FLAGS) --workspace

# Never fetches anything: copies what `build` made and whatever ./runtime holds.
install: build
	install -d $(BINDIR) $(LIBDIR)
	install -m 0755 target/release/banger target/release/bangerd $(BINDIR)/
	@if [ -d runtime ]; then cp -a runtime/. $(LIBDIR)/ && echo "installed runtime bundle into $(LIBDIR)"; \
	else echo "note: ./runtime is missing, so no runtime bundle was installed into $(LIBDIR) (make runtime-bundle or make runtime-build first)"; fi

uninstall:
	rm -f $(BINDIR)/banger $(BINDIR)/bangerd
	rm -rf $(LIBDIR)

quickstart: build
	target/release/banger daemon status
	-target/release/banger runtime check

bench: bench-status

bench-status: build
	scripts/apt-deps.sh $(BENCH_DEBS)
	scripts/bench-status.sh

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
