# spoolmq — `make run` and `make test` do everything on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DIST   := dashboard/dist/index.html
DASH_SRC := $(shell find dashboard/src dashboard/index.html dashboard/package.json dashboard/vite.config.* -type f 2>/dev/null)

.PHONY: install run test lint bench bench-quick bench-deps system-deps clean

install: $(STAMP) $(DIST)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The dashboard is built once (and again when its sources change); the built files are not committed.
$(DIST): $(DASH_SRC)
	@if [ -f dashboard/package.json ]; then \
		cd dashboard && npm ci --no-audit --no-fund --loglevel=error && npm run build; \
	fi

# Debian packages the test suite needs: Chromium for the browser tests, wrk/curl for HTTP.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

run: install
	$(BIN)/spoolmq serve --data-dir ./data --log-dir ./logs

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install system-deps lint
	@if [ -f dashboard/package.json ]; then cd dashboard && npm test --silent; fi
	$(BIN)/pytest -q

# Redis, NATS, RabbitMQ and wrk from Debian, and their Python clients, for the side-by-side runs.
bench-deps: install
	bash bench/setup_peers.sh $(VENV)

bench: install bench-deps
	$(BIN)/python -m bench.storage
	$(BIN)/python -m bench.broker
	$(BIN)/python -m bench.http

bench-quick: install bench-deps
	$(BIN)/python -m bench.storage --quick
	$(BIN)/python -m bench.broker --quick
	$(BIN)/python -m bench.http --quick

clean:
	rm -rf $(VENV) dashboard/node_modules dashboard/dist .mypy_cache .ruff_cache .pytest_cache
