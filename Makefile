# Two commands on a fresh clone: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint dev lock system-deps clean

$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

# Headless Chromium for the UI tests and Redis for the Celery worker tests (the broker); Debian's
# packages, never a tool's own download.
system-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: the e2e tests will be skipped (sudo apt-get install chromium)"; fi; \
	fi
	@if [ ! -x /usr/bin/redis-server ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else echo "redis-server missing: the Celery worker tests will fail (sudo apt-get install redis-server)"; fi; \
	fi

demo: $(STAMP)
	$(BIN)/movierec demo

dev: $(STAMP)
	$(BIN)/movierec dev

lint: $(STAMP)
	$(BIN)/ruff check movierec_assets movierec_assets_tests benchmarks

# The serving tests run twice: as the CPU is, then as an AVX2-only x86-64 CPU would run them
# (OpenBLAS's Haswell kernel, numpy's dispatch capped at AVX2), so that an AVX-512 machine
# exercises the code paths an AVX2-only one takes. ONNX Runtime has no switch of its own: the CPU
# flags movierec reads are overridden instead, so serving picks the 7-bit codes a CPU without VNNI gets.
AVX2_ONLY := OPENBLAS_CORETYPE=Haswell NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR" \
	MOVIEREC_CPU_FLAGS="fpu sse2 ssse3 sse4_1 sse4_2 avx avx2 fma"

test: $(STAMP) system-deps lint
	$(BIN)/pytest
	$(AVX2_ONLY) $(BIN)/pytest -q movierec_assets_tests/serving

lock: $(STAMP)
	(echo "# Exact versions of the whole dependency tree (pip freeze). Regenerate with \`make lock\`."; $(BIN)/pip freeze --exclude-editable | grep -v "^movierec") > requirements.lock

clean:
	rm -rf $(VENV) .movierec
