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
# Modest by default (minutes); the issue's large sizes: make bench BENCH_SIZES=100,1000,10000,100000
# BENCH_SNAP_USERS=1000 BENCH_SNAP_PER_USER=1000 BENCH_START_USERS=1000 BENCH_START_PER_USER=1000
# (1M vectors, ~8 GB RAM, several minutes each).
# mem0_compare.py makes its own .bench-venv/mem0 from the package registry on first use
# (skipped with a one-line reason when it cannot).
BENCH_SIZES ?= 100,1000,10000
BENCH_SNAP_USERS ?= 200
BENCH_SNAP_PER_USER ?= 200
BENCH_START_USERS ?= 100
BENCH_START_PER_USER ?= 200
bench:
	scripts/setup.sh && .venv/bin/python bench/context_latency.py \
		&& .venv/bin/python bench/concurrency.py --users 100 --instructions 100 --duration 10 \
		&& .venv/bin/python bench/profile_size.py --sizes $(BENCH_SIZES) --queries 50 \
		&& .venv/bin/python bench/snapshot_stall.py --users $(BENCH_SNAP_USERS) \
			--per-user $(BENCH_SNAP_PER_USER) \
		&& .venv/bin/python bench/startup.py --users $(BENCH_START_USERS) \
			--per-user $(BENCH_START_PER_USER) \
		&& .venv/bin/python bench/mem0_compare.py --users 100 --memories 100 --queries 100
eval:
	scripts/setup.sh && .venv/bin/tailor-eval run --suite nightly --in-process --out runs/$$(date +%F)
