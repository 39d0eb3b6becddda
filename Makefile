# Cove — build, run, test, bench, fuzz. `make help` lists the targets.
SWIFT ?= swift
FUZZ_RUNS ?= 1000000
FUZZ_TARGETS ?= FuzzDOE FuzzSPDMDecoders FuzzResponder FuzzPCISIGProtocols FuzzVIOMMUCommands \
  FuzzEvidence FuzzGuestEnumeration FuzzPcap FuzzGuestLink FuzzSPDMSocket

.PHONY: all build release run test bench fuzz format embed-images check-deps check-test-deps check-report help clean

all: build

help:
	@echo "make build   debug build of every target"
	@echo "make run     release build, then 'cove run' (the built-in guest image: the whole TEE-IO story)"
	@echo "make test    build and run every test"
	@echo "make bench   release build, then the benchmark (figures beside their baselines)"
	@echo "make fuzz    libFuzzer targets, FUZZ_RUNS=$(FUZZ_RUNS) runs each"
	@echo "make format  swift format with the committed .swift-format"
	@echo "make embed-images  rebuild the guest images built into cove from guest-images/*.yaml"
	@echo "make check-report  'cove run --report' loaded in headless Chromium (REPORT=page.html: check that page)"

# OpenSSL comes from the system (Sources/COpenSSL is a system library over libssl-dev).
# On a fresh Debian/Ubuntu machine we install it when we can (root, apt-get present); otherwise we
# stop and say exactly what to install.
check-deps:
	@command -v $(SWIFT) >/dev/null 2>&1 || { echo "error: swift not found on PATH (Cove needs Swift 6.1 or newer)"; exit 1; }
	@if ! pkg-config --exists openssl 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "OpenSSL development files (libssl-dev) and pkg-config are missing: installing them with apt-get"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config) >/dev/null || \
	      { echo "error: 'apt-get install libssl-dev pkg-config' failed; install them and retry"; exit 1; }; \
	  else \
	    echo "error: OpenSSL development files not found by pkg-config."; \
	    echo "       Install them: sudo apt-get install libssl-dev pkg-config   (Fedora: sudo dnf install openssl-devel pkgconf)"; \
	    exit 1; \
	  fi; \
	fi

# Tests cross-check Cove against independent references: the openssl command line and Python's
# `cryptography` package. Install them when missing and possible, else say what to install.
check-test-deps: check-deps
	@if ! command -v openssl >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "the openssl command line is missing: installing it with apt-get"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl) >/dev/null || \
	      { echo "error: 'apt-get install openssl' failed"; exit 1; }; \
	  else echo "error: tests need the openssl command line: sudo apt-get install openssl"; exit 1; fi; \
	fi
	@if ! python3 -c "import cryptography" >/dev/null 2>&1; then \
	  echo "Python's cryptography package is missing: installing it with pip"; \
	  python3 -m pip install --quiet cryptography >/dev/null 2>&1 || \
	    { echo "error: tests need Python 3 with 'cryptography': python3 -m pip install cryptography (or apt-get install python3-cryptography)"; exit 1; }; \
	fi

build: check-deps
	$(SWIFT) build

release: check-deps
	$(SWIFT) build -c release --product cove

run: release
	@$$($(SWIFT) build -c release --show-bin-path)/cove run

test: check-test-deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	@echo "Examples/custom-driver: a guest driver in its own package, built against Cove and run from its image"
	$(SWIFT) build --package-path Examples/custom-driver
	Examples/custom-driver/.build/debug/custom-run run Examples/custom-driver/images/mini.yaml --quiet

bench: check-deps
	$(SWIFT) build -c release --product cove-bench
	@$$($(SWIFT) build -c release --show-bin-path)/cove-bench

# The HTML run report in a real browser: scripts/check-report.sh renders the default image's report with
# 'cove run --report' (or takes REPORT=page.html), loads it in headless Chromium (installed with apt-get
# when root and missing) and fails on any console message or a missing or empty diagram.
check-report: check-deps
	@SWIFT="$(SWIFT)" REPORT="$(REPORT)" scripts/check-report.sh

fuzz: check-deps
	@for target in $(FUZZ_TARGETS); do \
	  Fuzz/run.sh $$target $(FUZZ_RUNS) || exit 1; \
	done

embed-images:
	python3 scripts/embed-images.py

format:
	$(SWIFT) format --configuration .swift-format -i -r Package.swift Sources Tests Fuzz/Sources

clean:
	rm -rf .build Fuzz/.build
