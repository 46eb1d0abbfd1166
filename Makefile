# Two commands do all set-up on a fresh machine:
#   make demo   toy arena: generate, draw, every augmenter x IQL x 2 seeds, report (main and DVR tables printed)
#   make test   run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv bench-data clean

venv: $(STAMP)

# torch==2.13.0 is named in the same pip command so pip never picks a multi-GB CUDA build;
# constraints.txt pins every other package to the versions that were resolved together.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0 -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bench data make toy-arena
	$(VENV)/bin/bench data show toy-arena --task 1
	$(VENV)/bin/bench sweep sweeps/demo.yaml
	$(VENV)/bin/bench report sweeps/demo.yaml --out reports/demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q -rs tests

bench-data: $(STAMP)
	$(PY) benchmarks/data_speed.py

clean:
	rm -rf $(VENV)
