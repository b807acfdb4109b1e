# Two entry points (see README): `make demo` runs the default study, `make test` runs the tests.
VENV ?= .venv
BIN := $(VENV)/bin
# Real GLUE data: the staged copy beside this checkout unless DSE_GLUE_DIR says otherwise.
export DSE_GLUE_DIR ?= $(abspath ../shared/data/glue)

.PHONY: install demo test
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0   # the CPU build; keeps pip from pulling CUDA
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: install
	$(BIN)/dse study run search_spaces/sst2_minilm.yaml

test: install
	$(BIN)/python -m pytest -q
