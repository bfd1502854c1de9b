# Two commands matter: `make run` (start the gateway on :8080) and `make test` (the whole suite).
# Both create .venv and install the project into it on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run demo test bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

keys.json:
	cp keys.example.json keys.json
	@echo "Created keys.json from keys.example.json: put your real provider keys in it (or try 'make demo')."

run: install keys.json
	$(PY) -m gateway

# The gateway in front of a local mock provider: real traffic within a minute, no API keys needed.
demo: install
	$(PY) examples/demo.py

test: install
	$(PY) -m pytest

# Overhead benchmark (by hand, not part of `make test`): see README "Performance".
bench: install
	$(PY) bench/run.py

# Soak run (by hand, ~12 minutes): 200 held streams plus mixed faults and disconnects for 10 minutes,
# then leaks (RSS, tracemalloc, fds, tasks) and lost records are checked; see README "Soak".
soak: install
	$(PY) bench/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
