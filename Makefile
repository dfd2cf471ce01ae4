# Thin wrapper over CMake. The first two targets are the README's commands.
#   make demo   install what is missing, build, run the producer/consumer demo
#   make test   install what is missing, build and run every test: the normal
#               build, ThreadSanitizer, ASan+UBSan, and a fuzz smoke run
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
BUILD     ?= build
CMAKE_ARGS ?=
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 20

.PHONY: all demo test deps build release debug tsan asan fuzz fuzz-smoke bench memcheck \
        install clean format check-format test-release test-tsan test-asan fault test-fault

all: build

deps:
	@sh scripts/deps.sh

build release: deps
	cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD)/release -j $(JOBS)

debug: deps
	cmake -S . -B $(BUILD)/debug -DCMAKE_BUILD_TYPE=Debug $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD)/debug -j $(JOBS)

tsan: deps
	CC=clang cmake -S . -B $(BUILD)/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DSHMRING_SANITIZE=thread -DSHMRING_BENCH=OFF $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD)/tsan -j $(JOBS)

asan: deps
	CC=clang cmake -S . -B $(BUILD)/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DSHMRING_SANITIZE=address -DSHMRING_BENCH=OFF $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD)/asan -j $(JOBS)

demo: build
	$(BUILD)/release/examples/demo

test-release: build
	cd $(BUILD)/release && ctest --output-on-failure -j 1

# TSan needs the low-entropy address space of older kernels: run without ASLR.
test-tsan: tsan
	cd $(BUILD)/tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	    setarch $$(uname -m) -R ctest --output-on-failure -j 1

test-asan: asan
	cd $(BUILD)/asan && ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" \
	    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" ctest --output-on-failure -j 1

# Fault injection: the library with its named points compiled in, and the
# crash suite that kills a party at every one of them (docs/hardening.md).
fault: deps
	cmake -S . -B $(BUILD)/fault -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMRING_FAULT_INJECTION=ON \
	    -DSHMRING_BENCH=OFF -DSHMRING_EXAMPLES=OFF $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD)/fault -j $(JOBS)

test-fault: fault
	cd $(BUILD)/fault && ctest --output-on-failure -j 1 -R '^test_fault|^test_bridge$$'

fuzz: deps
	CC=clang cmake -S . -B $(BUILD)/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMRING_FUZZ=ON \
	    -DSHMRING_TESTS=OFF -DSHMRING_BENCH=OFF -DSHMRING_EXAMPLES=OFF -DSHMRING_CLI=OFF $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD)/fuzz -j $(JOBS)
	@if [ -x fuzz/run.sh ]; then sh fuzz/run.sh $(BUILD)/fuzz $(FUZZ_SECONDS); fi

fuzz-smoke:
	@if [ -d fuzz ]; then $(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS); fi

test: test-release test-tsan test-asan test-fault fuzz-smoke
	@echo "shmring: all test builds passed"

# The peers' packages come first, so that the build finds them (bench_ipc
# skips the rows of a peer it was built without).
bench:
	@sh scripts/deps.sh gnuplot-nox libdpdk-dev iceoryx libiceoryx-binding-c-dev valgrind
	$(MAKE) build
	sh bench/run.sh $(BUILD)/release

# valgrind over the debug build's suites: Criterion runs each test in a child
# it re-executes, so children are traced; system programs are not. The stress
# tests are scaled down (valgrind is 20-50 times slower); see docs/sanitizers.md.
VALGRIND_OPTIONS = --trace-children=yes --trace-children-skip=/bin/*,/usr/bin/*,/usr/sbin/* \
    --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-possibly-lost=no \
    --num-callers=30
memcheck: debug
	@sh scripts/deps.sh valgrind
	cd $(BUILD)/debug && SHMRING_TEST_SCALE=0.02 SHMRING_TEST_VALGRIND=1 ctest --output-on-failure -j 1 -T memcheck \
	    -E '^packaging' --overwrite MemoryCheckCommand=$$(command -v valgrind) \
	    --overwrite "MemoryCheckCommandOptions=$(VALGRIND_OPTIONS)"

# Needs only what the library and the tool need: without Criterion or clang,
# the tests are skipped (CMake says so) and the rest is built and installed.
install:
	@sh scripts/deps.sh --build-only
	cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD)/release -j $(JOBS)
	cmake --install $(BUILD)/release

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)
