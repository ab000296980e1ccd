# p2p-chat — the two commands are `make run` and `make test`; everything else is a building block.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check
SERVE_STAMP := $(VENV)/.installed-serve
STAMP  := $(VENV)/.installed

.PHONY: run test lint types imports unit integration migrate bench install install-serve node-tools asyncapi lock clean

# What serving needs (make run): the runtime lock and the project, nothing else.
$(SERVE_STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "p2p-chat needs Python 3.11 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>&1)." \
		"Run: make PYTHON=python3.11 …" >&2; exit 1; }
	@echo ">> creating $(VENV) and installing the pinned runtime dependencies"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) -r requirements.lock
	@$(PIP) --no-deps -e .
	@touch $(SERVE_STAMP)

install-serve: $(SERVE_STAMP)

# What testing adds (make test): linters, type checker, test tools, and the Python SDK (the
# tests drive the server with it).
$(STAMP): $(SERVE_STAMP) requirements-dev.lock clients/python/pyproject.toml
	@echo ">> installing the pinned development and test tools"
	@$(PIP) -r requirements.lock -r requirements-dev.lock
	@$(PIP) --no-deps -e clients/python
	@touch $(STAMP)

install: $(STAMP)

# The AsyncAPI validator the tests run (node + npm; without them its test is skipped, or fails with CI=true).
NODE_TOOLS := tools/asyncapi
NODE_STAMP := $(NODE_TOOLS)/node_modules/.installed
$(NODE_STAMP): $(NODE_TOOLS)/package.json $(NODE_TOOLS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		echo ">> npm ci in $(NODE_TOOLS) (the AsyncAPI validator)"; \
		cd $(NODE_TOOLS) && npm ci --silent && touch node_modules/.installed; \
	else echo ">> npm not found: the AsyncAPI validation test will be skipped"; fi

# The JavaScript SDK's dev dependencies (typescript, ws) for its tests (tests/integration/test_js_sdk.py).
JS_SDK := clients/js
JS_SDK_STAMP := $(JS_SDK)/node_modules/.installed
$(JS_SDK_STAMP): $(JS_SDK)/package.json $(JS_SDK)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		echo ">> npm ci in $(JS_SDK) (the JavaScript SDK's test tools)"; \
		cd $(JS_SDK) && npm ci --silent && touch node_modules/.installed; \
	else echo ">> npm not found: the JavaScript SDK tests will be skipped"; fi

node-tools: $(NODE_STAMP) $(JS_SDK_STAMP)

# docs/asyncapi.json from the WebSocket frame types (a test fails while it is stale).
asyncapi: $(STAMP)
	@$(BIN)/python -m entrypoints.ws.asyncapi

run: $(SERVE_STAMP)
	@$(BIN)/p2p-chat migrate
	@$(BIN)/p2p-chat serve

migrate: $(SERVE_STAMP)
	@$(BIN)/p2p-chat migrate

lint: $(STAMP)
	@echo ">> ruff"
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

types: $(STAMP)
	@echo ">> mypy --strict"
	@$(BIN)/mypy

imports: $(STAMP)
	@echo ">> import-linter"
	@$(BIN)/lint-imports

unit: $(STAMP)
	@$(BIN)/python -m pytest tests/unit -q

integration: $(STAMP)
	@$(BIN)/python -m pytest tests/integration -q

test: lint types imports node-tools
	@echo ">> pytest"
	@$(BIN)/python -m pytest -q

# The hashed locks from requirements.in / requirements-dev.in, keeping today's pins (pass
# UPGRADE=--upgrade to take the newest releases). No index address is written into them.
# pip-compile runs from a venv of its own: it needs a newer pip than the locks install.
LOCK_VENV := .venv-lock
COMPILE = $(LOCK_VENV)/bin/pip-compile --quiet --no-header --generate-hashes --no-emit-index-url --no-emit-find-links --strip-extras $(UPGRADE)
lock:
	@test -x $(LOCK_VENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check pip-tools==7.7.0; }
	@$(COMPILE) -o requirements.lock requirements.in
	@$(COMPILE) -o requirements-dev.lock requirements-dev.in

# Scenario (a) by default: ceiling vs real server on SQLite, ratio table on stdout, JSON in
# bench/results/. Other scenarios: make bench ARGS="--scenario b" (c, d; see docs/performance.md).
ARGS ?= --scenario a
bench: $(STAMP)
	@$(BIN)/python -m bench run $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache $(NODE_TOOLS)/node_modules $(JS_SDK)/node_modules
