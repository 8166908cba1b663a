# banger — build, test, install. `make help` lists the targets.
PREFIX ?= $(HOME)/.local
CARGO ?= cargo
CARGO_FLAGS ?= -j2 --locked
PROFILE ?= release
RUNTIME_DIR ?= runtime
OUT := target/$(if $(filter release,$(PROFILE)),release,debug)
BINDIR := $(PREFIX)/bin
LIBDIR := $(PREFIX)/lib/banger

# Debian packages: for building, for the test suite, for benchmarks.
BUILD_DEBS := build-essential pkg-config ca-certificates
TEST_DEBS := curl procps sudo iproute2 iptables conntrack iputils-ping e2fsprogs openssh-client qemu-system-x86
BENCH_DEBS := hyperfine python3 bc qemu-system-x86 iproute2

.PHONY: runtime-bundle runtime-package help deps test-deps build test install uninstall quickstart bench bench-status bench-bundle bench-vm fmt clippy clean check-cargo

help:
	@echo "make quickstart   install system packages, build, start the daemon and show its status"
	@echo "make build        build target/release/{banger,bangerd}"
	@echo "make test         install test packages, run every test"
	@echo "make runtime-bundle   fetch + verify the bundle pinned in runtime-bundle.toml into ./runtime"
	@echo "make runtime-package  package ./runtime into dist/banger-runtime.tar.gz (deterministic)"
	@echo "make install      install binaries to PREFIX/bin and the runtime bundle to PREFIX/lib/banger (PREFIX=$(PREFIX))"
	@echo "make bench        run the benchmarks reported in README.md"

check-cargo:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust >= 1.95 (rustup), then retry" >&2; exit 1; }

deps:
	scripts/apt-deps.sh $(BUILD_DEBS)

test-deps: deps
	scripts/apt-deps.sh $(TEST_DEBS)

CARGO_BUILD = $(CARGO) build --profile $(if $(filter release,$(PROFILE)),release,dev) $(CARGO_FLAGS) -p banger

build: check-cargo deps
	$(CARGO_BUILD)

test: check-cargo test-deps
	$(CARGO) test $(CARGO_FLAGS) --workspace

# Never fetches anything: copies what `build` made and whatever ./runtime holds.
# (It installs no system packages either: run `make build` first on a fresh machine.)
install: check-cargo
	$(CARGO_BUILD)
	install -d $(BINDIR) $(LIBDIR)
	install -m 0755 $(OUT)/banger $(OUT)/bangerd $(BINDIR)/
	@if [ -d $(RUNTIME_DIR) ]; then cp -a --sparse=always $(RUNTIME_DIR)/. $(LIBDIR)/ && echo "installed runtime bundle into $(LIBDIR)"; \
	else echo "note: $(RUNTIME_DIR) is missing, so no runtime bundle was installed into $(LIBDIR) (make runtime-bundle or make runtime-build first)"; fi

# Download the bundle pinned in runtime-bundle.toml into ./runtime (verified before unpacking).
runtime-bundle: build
	$(OUT)/banger runtime fetch --manifest runtime-bundle.toml --dir $(RUNTIME_DIR)

# Package ./runtime deterministically into dist/banger-runtime.tar.gz and print its SHA-256.
runtime-package: build
	$(OUT)/banger runtime package --dir $(RUNTIME_DIR) --out dist/banger-runtime.tar.gz --manifest runtime-bundle.toml

uninstall:
	rm -f $(BINDIR)/banger $(BINDIR)/bangerd
	rm -rf $(LIBDIR)

quickstart: build
	$(OUT)/banger daemon status
	-$(OUT)/banger runtime check

bench: bench-status bench-bundle bench-vm

bench-status: build
	scripts/apt-deps.sh $(BENCH_DEBS)
	scripts/bench-status.sh

bench-bundle: check-cargo deps
	scripts/apt-deps.sh $(BENCH_DEBS)
	$(CARGO) run --release $(CARGO_FLAGS) -p banger-bundle --example bench_fetch -- 512

# Needs root (TAPs) and a runtime bundle (make runtime-build).
bench-vm: build
	scripts/apt-deps.sh $(BENCH_DEBS)
	RUNTIME=$(RUNTIME_DIR) scripts/bench-vm.sh

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
