# latchkey — the two commands: `make demo` and `make test`.
# Everything else is here for developers: `make` builds into build/,
# `make bench` measures, `make install PREFIX=/usr/local` installs.

BUILD      ?= build
ASAN_BUILD ?= build-asan
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
# ctest runs two suites at once (the ones that assert on time run alone:
# tests/CMakeLists.txt); more would only crowd a small machine.
TEST_JOBS  ?= 2
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 4
FUZZ_RUNS ?= 10000000
FUZZ_TARGETS ?=

.PHONY: all deps deps-run build build-quiet build-asan test test-cortexm demo bench bench-max soak test-valgrind install clean \
        build-fuzz fuzz test-fuzz fuzz-campaign deb test-deb

all: build

# Packages: `deps` for everything (tests, fuzzing, benchmarks), `deps-run`
# for building, installing and the demo only.
deps:
	@sh scripts/install-deps.sh test

deps-run:
	@sh scripts/install-deps.sh run

# The tests need cmocka (a `make test` package); a build for the demo or an
# install configures without them when it is missing.
$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DLK_BUILD_TESTS=$$(pkg-config --exists cmocka && echo ON || echo OFF)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The same, its output in $(BUILD)/build.log unless it fails (make demo).
build-quiet: $(BUILD)/CMakeCache.txt
	@echo "latchkey: building in $(BUILD)/ (output in $(BUILD)/build.log)"
	@cmake --build $(BUILD) -j $(JOBS) >$(BUILD)/build.log 2>&1 || \
	    { tail -40 $(BUILD)/build.log; echo "latchkey: the build failed: $(BUILD)/build.log"; exit 1; }

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLK_SANITIZE=ON

build-asan: $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# libFuzzer targets, clang with ASan+UBSan (docs/fuzzing.md).
$(FUZZ_BUILD)/CMakeCache.txt:
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DLK_FUZZ=ON -DLK_BUILD_TESTS=OFF

build-fuzz: $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_all

# Every test: the normal build, then the same tests under ASan+UBSan, then the
# core's known-answer tests on an emulated Cortex-M0, then each fuzz target
# briefly.
test: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLK_BUILD_TESTS=ON
	$(MAKE) build
	cd $(BUILD) && ctest -j $(TEST_JOBS) --output-on-failure
	$(MAKE) build-asan
	cd $(ASAN_BUILD) && ctest -j $(TEST_JOBS) --output-on-failure
	$(MAKE) test-cortexm
	$(MAKE) test-fuzz
	@echo "latchkey: all tests passed"

test-cortexm:
	sh tests/cortexm/run.sh

# Each fuzz target (or FUZZ_TARGETS) for FUZZ_TEST_SECONDS (in `make test`)
# or FUZZ_SECONDS.
test-fuzz: build-fuzz
	sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_TEST_SECONDS) $(FUZZ_TARGETS)

fuzz: deps
	$(MAKE) build-fuzz
	sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Each fuzz target (or FUZZ_TARGETS) for FUZZ_RUNS executions, the counts
# appended to $(FUZZ_BUILD)/fuzz-campaign.txt (docs/fuzzing.md). Hours long:
# not part of `make test`.
fuzz-campaign: deps
	$(MAKE) build-fuzz
	sh tests/fuzz/run.sh --runs $(FUZZ_RUNS) --report $(FUZZ_BUILD)/fuzz-campaign.txt $(FUZZ_BUILD) $(FUZZ_TARGETS)

demo: deps-run
	@$(MAKE) --no-print-directory build-quiet
	sh scripts/demo.sh $(BUILD)

bench: deps
	$(MAKE) build
	sh bench/run.sh $(BUILD)

# An hour of the whole service in use: nothing lost, memory and descriptors flat
# (tests/integration/soak.py; a short one runs in `make test` and `make bench`).
SOAK_SECONDS ?= 3600
soak: deps
	$(MAKE) build
	/usr/bin/python3 tests/integration/soak.py --build $(BUILD) --seconds $(SOAK_SECONDS) --out $(BUILD)/soak.txt

# Integration suites with the broker and latchkeyd under valgrind's memcheck: no leak or
# memory error in latchkey's code (tests/valgrind/run.sh; slow, not in `make test`).
test-valgrind: deps
	$(MAKE) build
	sh tests/valgrind/run.sh $(BUILD) $(VALGRIND_SUITES)

# The largest fleet one broker keeps connected (minutes long; not in CI).
bench-max: deps
	$(MAKE) build
	sh bench/max.sh $(BUILD) $(BUILD)/bench-max.txt

# As root, ldconfig makes the new shared libraries known to the loader.
install: deps-run
	@$(MAKE) --no-print-directory build-quiet
	cmake --install $(BUILD) --prefix $(PREFIX)
	@if [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null 2>&1; then ldconfig; fi

# Debian packages (docs/operations.md): built with debhelper from a copy of
# this tree in $(DEB_BUILD)/src, so that nothing is written beside the clone;
# the .deb files land in $(DEB_BUILD)/, checked by lintian (errors fail).
DEB_BUILD ?= build-deb
deb:
	@sh scripts/install-deps.sh deb
	sh scripts/build-deb.sh $(DEB_BUILD)

# The packages installed in a fresh Debian 12 root (mmdebstrap), booted with
# systemd where it can run (systemd-nspawn): minutes long, not in `make test`.
test-deb: deb
	@sh scripts/install-deps.sh test-deb
	sh tests/package/run.sh $(DEB_BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-cortexm $(FUZZ_BUILD) $(DEB_BUILD)
