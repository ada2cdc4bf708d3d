.PHONY: setup run test test-fast lint bench eval
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
	scripts/setup.sh && .venv/bin/python bench/context_latency.py \
		&& .venv/bin/python bench/concurrency.py --users 100 --instructions 100 --duration 10
eval:
	scripts/setup.sh && .venv/bin/tailor-eval run --suite nightly --in-process --out runs/$$(date +%F)
