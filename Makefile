# The two commands the README opens with: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
CORPUS_SET ?= ci
AUDIOLSH_CORPUS ?= $(HOME)/.cache/audiolsh-corpus
INDEX ?= audiolsh-index
MUSIC ?=
PYTEST_WORKERS ?= 2
export AUDIOLSH_CORPUS

.PHONY: run test install system-deps lint typecheck kernels pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# System packages: ffmpeg (decoding fallback, test fixtures), libsndfile, chromium and its driver
# (the web app's browser tests), redis-server (the tests of redis:// locations start their own),
# Java 17 for Spark (audiolsh[spark]), PortAudio for identify --mic (audiolsh[mic]); apt needs root.
system-deps:
	@missing=""; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	ldconfig -p 2>/dev/null | grep -q libsndfile || missing="$$missing libsndfile1"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	ldconfig -p 2>/dev/null | grep -q libportaudio || missing="$$missing libportaudio2"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,bench,redis,spark,mic,pilot]'
	touch $@

install: system-deps $(VENV)/.installed

lint: install
	$(BIN)/ruff check src tests benchmarks conftest.py

typecheck: install
	$(BIN)/mypy

# numba compiles a kernel the first time a process runs it and caches it on disk: compiled here
# once, on every core, into the cache each test process starts from (conftest.py), instead of in
# each test process and the commands they start; one process (PYTEST_WORKERS=0) uses numba's
# own cache beside the package.
kernels: install
	@if [ "$(PYTEST_WORKERS)" = 0 ]; then $(BIN)/audiolsh precompile; \
	else NUMBA_CACHE_DIR=$(CURDIR)/.pytest_cache/numba/seed $(BIN)/audiolsh precompile; fi

# --max-worker-restart=0: a crashed worker ends the run at once, naming its test (xdist's
# replacement worker can wait forever under --dist loadfile: pytest-xdist#1378).
pytest: kernels
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile --max-worker-restart=0 --durations=15

test: lint typecheck pytest

run: install
	@music="$(MUSIC)"; \
	if [ -z "$$music" ]; then \
	  $(SHARED)/data/fetch-corpus --set $(CORPUS_SET) >/dev/null || exit 1; \
	  music="$(AUDIOLSH_CORPUS)/$(CORPUS_SET)"; \
	fi; \
	if [ -f "$(INDEX)/manifest.json" ] && [ ! -f "$(INDEX)/library.json" ]; then \
	  echo "$(INDEX) holds a vector index from an older make run; rebuilding it as a music library"; \
	  rm -rf "$(INDEX)"; \
	fi; \
	if [ -f "$(INDEX)/library.json" ] && grep -qE '"format_version": [1-4],' "$(INDEX)/library.json"; then \
	  echo "$(INDEX) holds a library of an older format; rebuilding it"; \
	  rm -rf "$(INDEX)"; \
	fi; \
	if [ -d "$(INDEX)" ] && $(BIN)/audiolsh info --index "$(INDEX)" --format csv 2>&1 | grep -qE "is too old|have no energy envelope"; then \
	  echo "$(INDEX) holds fingerprints of an older format; rebuilding it"; \
	  rm -rf "$(INDEX)"; \
	fi; \
	echo "indexing $$music into $(INDEX)"; \
	$(BIN)/audiolsh index "$$music" --index "$(INDEX)" || [ $$? = 2 ]; \
	$(BIN)/audiolsh info --index "$(INDEX)"; \
	clips=$$(find "$$music" -type f \( -name '*.ogg' -o -name '*.opus' -o -name '*.mp3' -o -name '*.wav' -o -name '*.flac' \) | sort | head -n 3); \
	echo "what are 10-s excerpts of three tracks, taken 30 s in:"; \
	IFS=$$'\n'; $(BIN)/audiolsh identify $$clips --offset 30 --duration 10 --index "$(INDEX)"; \
	echo "what sounds like them (rhythm, timbre and peaks combined):"; \
	$(BIN)/audiolsh similar $$clips --offset 30 --duration 10 --index "$(INDEX)" -k 3; \
	$(BIN)/audiolsh serve --index "$(INDEX)" --host 127.0.0.1 --port 8000

bench: install
	$(BIN)/python benchmarks/knn.py --data all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
