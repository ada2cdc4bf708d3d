.PHONY: setup run test test-fast lint bench
setup:
	scripts/setup.sh
run:
	scripts/run.sh
test:
	scripts/test.sh
test-fast:
	scripts/test.sh -m "not slow"
lint:
	scripts/setup.sh && .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy
bench:
	scripts/setup.sh && .venv/bin/python bench/context_latency.py
