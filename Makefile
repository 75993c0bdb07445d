# latchkey — the two commands: `make demo` and `make test`.
# Everything else is here for developers: `make` builds into build/,
# `make bench` measures, `make install PREFIX=/usr/local` installs.

BUILD      ?= build
ASAN_BUILD ?= build-asan
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PYTHON     ?= /usr/bin/python3

.PHONY: all deps build build-asan test test-unit test-asan test-cortexm demo bench install clean

all: build

deps:
	@sh scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLK_SANITIZE=ON

build-asan: $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# Every test: the normal build, then the same tests under ASan+UBSan, then the
# core's known-answer tests on an emulated Cortex-M0.
test: deps
	$(MAKE) build
	cd $(BUILD) && ctest --output-on-failure
	$(MAKE) build-asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -LE no-asan
	$(MAKE) test-cortexm
	@echo "latchkey: all tests passed"

test-cortexm:
	sh tests/cortexm/run.sh

demo: deps
	$(MAKE) build
	sh scripts/demo.sh $(BUILD)

bench: deps
	$(MAKE) build
	sh bench/run.sh $(BUILD)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-cortexm
