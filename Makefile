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
# Running VMs (QEMU, TAPs, NAT, ssh) and building the runtime bundle from Debian packages.
RUN_DEBS := qemu-system-x86 iproute2 iptables conntrack openssh-client e2fsprogs procps
IMAGE_DEBS := mmdebstrap e2fsprogs dpkg kmod openssh-client mount apt ca-certificates
TEST_DEBS := $(RUN_DEBS) $(IMAGE_DEBS) curl sudo conntrack iputils-ping dnsutils tmux
INIT_BIN := target/guest-init/x86_64-unknown-linux-gnu/release/banger-init
BENCH_DEBS := hyperfine python3 bc qemu-system-x86 iproute2

.PHONY: reliability guest-init runtime-build rootfs runtime-bundle runtime-package help deps test-deps build test verify check install uninstall quickstart bench bench-status bench-bundle bench-daemon bench-events bench-vm bench-features bench-image bench-tui bench-boot bench-host-access bench-firecracker fmt clippy clean check-cargo virtiofsd

help:
	@echo "make quickstart   install packages, build, build the runtime bundle, create a VM, run a command in it over SSH"
	@echo "make build        build target/release/{banger,bangerd}"
	@echo "make check        fmt, clippy -D warnings and unit tests: no root, no network, no runtime bundle"
	@echo "make test         install test packages, run every test"
	@echo "make reliability  run the crash/restore/concurrency/hostile-input tests, write docs/reliability.md"
	@echo "make verify       check this machine end to end on a throwaway VM (banger verify --nat)"
	@echo "make runtime-build    build the runtime bundle from Debian packages into ./runtime (NO_DOCKER=1: skip the docker image)"
	@echo "make rootfs           rebuild rootfs-docker.ext4 if packages.apt changed (FORCE=1, BASE_ROOTFS=…)"
	@echo "make runtime-bundle   fetch + verify the bundle pinned in runtime-bundle.toml into ./runtime"
	@echo "make runtime-package  package ./runtime into dist/banger-runtime.tar.gz (deterministic)"
	@echo "make virtiofsd    build the Rust virtiofsd into ~/.local/bin (host folders as a normal user on Debian 12)"
	@echo "make install      install binaries to PREFIX/bin and the runtime bundle to PREFIX/lib/banger (PREFIX=$(PREFIX))"
	@echo "make bench        run the benchmarks reported in README.md (bench-firecracker apart: it needs FIRECRACKER= and JAILER=)"

check-cargo:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust >= 1.95 (rustup), then retry" >&2; exit 1; }

deps:
	scripts/apt-deps.sh $(BUILD_DEBS) $(RUN_DEBS)

test-deps: deps
	scripts/apt-deps.sh $(TEST_DEBS)

CARGO_BUILD = $(CARGO) build --profile $(if $(filter release,$(PROFILE)),release,dev) $(CARGO_FLAGS) -p banger

build: check-cargo deps
	$(CARGO_BUILD)

# Unit and integration tests, plus the end-to-end VM test on a runtime bundle built here from
# Debian packages (kept in ./runtime and reused when present; `make runtime-build` rebuilds it).
test: check-cargo test-deps guest-init
	$(CARGO) build --profile dev $(CARGO_FLAGS) -p banger
	@if [ -f $(RUNTIME_DIR)/bundle.toml ]; then echo "using the runtime bundle in $(RUNTIME_DIR)"; \
	else target/debug/banger runtime build --dir $(RUNTIME_DIR) --init $(INIT_BIN); fi
	rm -f $(REPORT_ROWS) && mkdir -p $(dir $(REPORT_ROWS))
	BANGER_TEST_RUNTIME=$(abspath $(RUNTIME_DIR)) BANGER_E2E_REQUIRED=1 BANGER_REPORT=$(abspath $(REPORT_ROWS)) $(CARGO) test $(CARGO_FLAGS) --workspace
	scripts/reliability-report.sh $(REPORT_ROWS) docs/reliability.md
	BANGER_RUNTIME_DIR=$(abspath $(RUNTIME_DIR)) scripts/ci-verify.sh

# docs/reliability.md from the tests that prove reliability and security properties (crash
# consistency at every fault point, live restore, host reboot, concurrency, disk full, many
# users, hostile input and bundles, version skew); `make test` regenerates it too.
REPORT_ROWS := target/reliability.tsv
reliability: check-cargo test-deps guest-init
	$(CARGO) build --profile dev $(CARGO_FLAGS) -p banger
	@if [ -f $(RUNTIME_DIR)/bundle.toml ]; then echo "using the runtime bundle in $(RUNTIME_DIR)"; \
	else target/debug/banger runtime build --dir $(RUNTIME_DIR) --init $(INIT_BIN); fi
	rm -f $(REPORT_ROWS) && mkdir -p $(dir $(REPORT_ROWS))
	BANGER_TEST_RUNTIME=$(abspath $(RUNTIME_DIR)) BANGER_E2E_REQUIRED=1 BANGER_REPORT=$(abspath $(REPORT_ROWS)) \
	  $(CARGO) test $(CARGO_FLAGS) -p banger-api -p banger-bundle -p banger-daemon --lib
	BANGER_TEST_RUNTIME=$(abspath $(RUNTIME_DIR)) BANGER_E2E_REQUIRED=1 BANGER_REPORT=$(abspath $(REPORT_ROWS)) \
	  $(CARGO) test $(CARGO_FLAGS) -p banger --test crash --test live_restore --test concurrency --test disk_full \
	  --test installations --test control_plane --test version_skew
	scripts/reliability-report.sh $(REPORT_ROWS) docs/reliability.md

# This machine, end to end, with the installed-style binary: a throwaway VM through create, ssh,
# stats, stop, set, start, DNS and NAT, then deleted (`banger verify --help`).
verify: build
	$(OUT)/banger verify --nat

# The edit–compile loop: formatting, lints and unit tests (the lifecycle runs against fakes).
# Needs no root, no network (once crates are fetched) and no runtime bundle.
check: check-cargo
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets --all-features -- -D warnings
	$(CARGO) test $(CARGO_FLAGS) --workspace --lib --bins

# Never fetches anything: copies what `build` made and whatever ./runtime holds.
# (It installs no system packages either: run `make build` first on a fresh machine.)
install: check-cargo
	$(CARGO_BUILD)
	install -d $(BINDIR) $(LIBDIR)
	install -m 0755 $(OUT)/banger $(OUT)/bangerd $(BINDIR)/
	@if [ -d $(RUNTIME_DIR) ]; then cp -a --sparse=always $(RUNTIME_DIR)/. $(LIBDIR)/ && echo "installed runtime bundle into $(LIBDIR)"; \
	else echo "note: $(RUNTIME_DIR) is missing, so no runtime bundle was installed into $(LIBDIR) (make runtime-bundle or make runtime-build first)"; fi

# The static init of the guest's initrd (its own target dir: static linking flags apply to it only).
guest-init: check-cargo
	RUSTFLAGS='-C target-feature=+crt-static -C strip=symbols' $(CARGO) build --release $(CARGO_FLAGS) \
	  -p banger-guest-init --target x86_64-unknown-linux-gnu --target-dir target/guest-init

# Build the whole runtime bundle from Debian packages into ./runtime (NO_DOCKER=1 skips rootfs-docker.ext4).
runtime-build: build guest-init
	scripts/apt-deps.sh $(IMAGE_DEBS)
	$(OUT)/banger runtime build --dir $(RUNTIME_DIR) --init $(INIT_BIN) $(if $(NO_DOCKER),--no-docker) $(if $(FORCE),--force)

# Rebuild rootfs-docker.ext4 when packages.apt changed (FORCE=1 always; BASE_ROOTFS=path to start from another base).
rootfs: build
	scripts/apt-deps.sh $(IMAGE_DEBS)
	$(OUT)/banger runtime rootfs --dir $(RUNTIME_DIR) $(if $(FORCE),--force) $(if $(BASE_ROOTFS),--base-rootfs $(BASE_ROOTFS))

# Download the bundle pinned in runtime-bundle.toml into ./runtime (verified before unpacking).
runtime-bundle: build
	$(OUT)/banger runtime fetch --manifest runtime-bundle.toml --dir $(RUNTIME_DIR)

# Package ./runtime deterministically into dist/banger-runtime.tar.gz and print its SHA-256.
runtime-package: build
	$(OUT)/banger runtime package --dir $(RUNTIME_DIR) --out dist/banger-runtime.tar.gz --manifest runtime-bundle.toml

uninstall:
	rm -f $(BINDIR)/banger $(BINDIR)/bangerd
	rm -rf $(LIBDIR)

quickstart:
	scripts/quickstart.sh

# The Rust virtiofsd (host folders as a normal user; Debian 12 packages only QEMU's root-only one),
# built from crates.io into ~/.local/bin, where bangerd looks for it.
VIRTIOFSD_VERSION ?= 1.14.0
virtiofsd: check-cargo
	scripts/apt-deps.sh $(BUILD_DEBS) libseccomp-dev libcap-ng-dev
	$(CARGO) install -j2 --locked --root $(HOME)/.local virtiofsd@$(VIRTIOFSD_VERSION)

bench: bench-status bench-bundle bench-daemon bench-events bench-vm bench-features bench-image bench-tui bench-boot bench-host-access

bench-status: build
	scripts/apt-deps.sh $(BENCH_DEBS)
	scripts/bench-status.sh

bench-bundle: check-cargo deps
	scripts/apt-deps.sh $(BENCH_DEBS)
	$(CARGO) run --release $(CARGO_FLAGS) -p banger-bundle --example bench_fetch -- 512

# bangerd's memory idle and with 100 VMs, `vm list --json` with 100 VMs (a runtime bundle; no root).
bench-daemon: build
	scripts/apt-deps.sh $(BENCH_DEBS)
	RUNTIME=$(RUNTIME_DIR) scripts/bench-daemon.sh

# Event delivery latency: phase change → 10 subscribers, 100 VMs registered (in-process, fake host).
bench-events: check-cargo deps
	$(CARGO) run --release $(CARGO_FLAGS) -p banger-daemon --features fake-host --example bench_events -- 100

# Needs root (TAPs) and a runtime bundle (make runtime-build).
bench-vm: build
	scripts/apt-deps.sh $(BENCH_DEBS)
	RUNTIME=$(RUNTIME_DIR) scripts/bench-vm.sh

# vm stats latency, .vm DNS latency and visibility, vm set --nat → first NAT'ed packet (root, a runtime bundle).
bench-features: build
	scripts/apt-deps.sh $(BENCH_DEBS)
	$(CARGO) build --release $(CARGO_FLAGS) -p banger-dns --example bench_dns
	RUNTIME=$(RUNTIME_DIR) scripts/bench-features.sh

# image build of a one-file script vs boot + script + copy by hand; the built image's allocation (root, a runtime bundle).
bench-image: build
	scripts/apt-deps.sh $(BENCH_DEBS) e2fsprogs tar
	RUNTIME=$(RUNTIME_DIR) scripts/bench-image.sh

# banger tui: keypress-to-redraw latency and idle CPU with 100 VMs on the fake host (no root, no bundle).
bench-tui: build
	scripts/apt-deps.sh $(BENCH_DEBS) tmux
	$(CARGO) build --release $(CARGO_FLAGS) -p banger-daemon --features fake-host --example fake_daemon
	scripts/bench-tui.sh

# Boot-to-SSH of banger's image vs a naive Debian image (builds the naive one with mmdebstrap; root).
# vm exec and vm cp vs plain ssh/scp with the same options (root, a runtime bundle).
bench-host-access: build
	scripts/apt-deps.sh $(BENCH_DEBS) openssh-client
	RUNTIME=$(RUNTIME_DIR) scripts/bench-host-access.sh

# Firecracker's start unjailed vs through its jailer (root; FIRECRACKER= and JAILER= from outside the repository).
bench-firecracker: check-cargo deps
	$(CARGO) build --release $(CARGO_FLAGS) -p banger-vmm --example bench_firecracker
	FIRECRACKER=$(FIRECRACKER) JAILER=$(JAILER) VMLINUX=$(abspath $(RUNTIME_DIR))/vmlinux target/release/examples/bench_firecracker 20

bench-boot:
	scripts/apt-deps.sh $(BENCH_DEBS) $(IMAGE_DEBS) openssh-client
	RUNTIME=$(RUNTIME_DIR) scripts/bench-boot.sh

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets --all-features -- -D warnings

clean:
	$(CARGO) clean
