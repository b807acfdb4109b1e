# Two entry points (see README): `make demo` runs the default study, `make test` runs the tests.
# Both install into .venv with the exact versions of requirements.lock (the test and litert extras
# included, so the LiteRT deploy tests run); `make lock` refreshes it.
VENV ?= .venv
BIN := $(VENV)/bin
# Real GLUE data: the staged copy beside this checkout unless DSE_GLUE_DIR says otherwise.
export DSE_GLUE_DIR ?= $(abspath ../shared/data/glue)

.PHONY: install demo test lock
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0   # the CPU build first; keeps pip from pulling CUDA
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip check
	touch $@

demo: install
	$(BIN)/dse study run search_spaces/sst2_minilm.yaml

test: install
	$(BIN)/python -m pytest -q --durations=25

# A fresh resolution of pyproject.toml's ranges in a throwaway venv, frozen to exact versions.
# Commit the refreshed lock on its own, then re-measure what the README's figures depend on.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV) && python3 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q torch==2.13.0
	$(LOCK_VENV)/bin/python -m pip install -q -e '.[test,litert]'
	{ echo "# Exact versions that make install, make test and .ci/run install. Refresh: make lock"; \
	  echo "# Python $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version(), platform.machine())'), resolved $$(date -u +%F)"; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable | grep -v '^edgebert-dse'; } > requirements.lock
	rm -rf $(LOCK_VENV)
