# Two entry points on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_RUN := runs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: install demo test lint bench clean

# PyTorch's CPU wheel first, so that no multi-GB CUDA build is ever downloaded on a CPU machine.
$(BIN)/seqlab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,series]'
	touch $@

install: $(BIN)/seqlab

demo: install
	$(BIN)/seqlab train oneills --model lstm --hidden-size 256 --embedding-size 64 \
		--seq-len 100 --batch-size 32 --lr 3e-3 --max-steps 1500 --time-budget 150 \
		--eval-every 100 --eval-batches 20 --out $(DEMO_RUN)
	@echo "--- what the model writes, primed with 'X:' ---"
	$(BIN)/seqlab generate $(DEMO_RUN) --prompt "X:" --length 600 --temperature 0.8 --seed 1

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
