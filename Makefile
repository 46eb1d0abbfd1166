# Two commands do all set-up on a fresh machine:
#   make demo   toy maze: generate, draw, train IQL, run the toy smoke sweep, report it (prints where outputs are)
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
	$(VENV)/bin/bench data make toy-maze
	$(VENV)/bin/bench data show toy-maze --task 1
	$(VENV)/bin/bench run --dataset toy-maze --task 1 --algo iql --augmenter none --seed 0 \
	    --steps 3000 --eval-every 1000 --eval-episodes 10
	$(VENV)/bin/bench sweep sweeps/toy-smoke.yaml
	$(VENV)/bin/bench collect sweeps/toy-smoke.yaml
	$(VENV)/bin/bench report sweeps/toy-smoke.yaml --out reports/toy-smoke

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q -rs tests

bench-data: $(STAMP)
	$(PY) benchmarks/data_speed.py

clean:
	rm -rf $(VENV)
