# The commands the README names. `make run` and `make test` set everything up on a fresh clone.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export FLASK_APP := wsgi.py

.PHONY: install run test worker relay lint bench clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## run: migrate, seed the demo and serve on 127.0.0.1:5000 with the embedded defaults
run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask seed-demo
	$(BIN)/flask run --host 127.0.0.1 --port 5000

## test: the whole suite (embedded defaults unless DATABASE_URL / REDIS_URL are set)
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## worker: an RQ worker with the scheduler (needs REDIS_URL)
worker: install
	$(BIN)/python -m workers

## relay: re-enqueue outbox rows left pending (the worker also does this on a schedule)
relay: install
	$(BIN)/flask outbox-relay

lint: install
	$(BIN)/ruff check .

## bench: load benchmarks (PostgreSQL + Redis); never part of `make test`
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
