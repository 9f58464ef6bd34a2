# The two set-up commands of the README:
#   make run   installs everything and runs Deskbell with a demo tenant (embedded PostgreSQL and NATS)
#   make test  installs everything and runs the whole test suite
# Both are safe to repeat; they only reinstall what changed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test install chromium bench

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# htmx and its SSE extension, exactly as package-lock.json pins them; served from node_modules.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

run: install
	$(BIN)/deskbell dev

# Browser tests drive Debian's chromium; install it when it is missing.
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

# Two test processes (the machine's two cores); a test module stays on one of them, with its fixtures.
test: install chromium
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 --dist loadfile --durations=25

# The benchmarks (bench/): load, raw JetStream and PostgreSQL, the python-socketio peer; docs/benchmarks.md.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench
