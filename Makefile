# Two commands for a newcomer: `make demo` (train + classify) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= $(wildcard ../shared/data/sms_spam_collection/SMSSpamCollection)
DATA_FLAG := $(if $(DATA),--data $(DATA),)
OUT ?= runs/sms-spam

.PHONY: demo test install install-dev lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# CPU build from this machine's disk; a bare `torch` would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/gptcls train $(DATA_FLAG) --out $(OUT)

# The browser test drives Debian's Chromium: installed here when missing (the same script CI uses).
test: install-dev
	bash scripts/install-test-deps.sh
	$(PY) -m pytest -q

# Benchmarks print tables (accuracy, training and inference speed against the book's code and
# transformers); they take about an hour on 2 cores.
bench: install-dev
	bash bench/setup.sh
	$(PY) bench/accuracy.py
	$(PY) bench/train_speed.py
	$(PY) bench/infer_speed.py --chapter-limit 500

lint: install-dev
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
