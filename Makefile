# percept: the two entry points are `make run` (build, model, ingest, serve,
# query) and `make test` (every test, release and ASan/UBSan). Each installs
# missing Debian packages itself (scripts/deps.sh) and builds FAISS once.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
FAISS_DIR  ?= $(abspath $(BUILD))/faiss

.PHONY: all deps faiss build build-asan test test-release test-asan run bench clean

all: build

deps:
	@./scripts/deps.sh

faiss: deps
	@./scripts/build-faiss.sh $(FAISS_DIR)

$(BUILD)/CMakeCache.txt: | faiss
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DPERCEPT_FAISS_DIR=$(FAISS_DIR)

build: faiss $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt: | faiss
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPERCEPT_SANITIZE=ON \
	  -DPERCEPT_FAISS_DIR=$(FAISS_DIR)

build-asan: faiss $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# Release suite, then the same suite under AddressSanitizer + UBSan (label
# `slow` excluded there: those tests repeat what the release run proves).
test: test-release test-asan

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -LE slow

run: build
	./scripts/first-run.sh $(BUILD) $(MODEL)

bench: build
	@for b in $(BUILD)/bench/*/bench_*; do [ -x "$$b" ] && "$$b"; done

clean:
	rm -rf $(BUILD)/CMakeFiles $(BUILD)/CMakeCache.txt $(ASAN_BUILD)
