# The two commands: `make demo` and `make test`. Everything they need is set up here.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint venv clean checkpoint

# The demo's model: a tiny generative model trained on simulated days (seeds 1-4), evaluated
# on seeds 5-6 it never saw. A few minutes on CPU; the result is committed (under 1 MB).
CKPT := model/checkpoints/demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/megatrading demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -c "import order_book" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/book_bench.py
	$(BIN)/python bench/feed_bench.py
	$(BIN)/python bench/sim_bench.py
	$(BIN)/python bench/pipeline_bench.py
	$(BIN)/python bench/model_bench.py

checkpoint: $(STAMP)
	$(BIN)/megatrading dataset --sim-seeds 1-6 --held-out 5-6 --sim-duration 1h --sim-symbols 3 \
		--anomaly-rate 2 --news 4 --out build/demo-data/train.npz --held-out-out build/demo-data/heldout.npz
	$(BIN)/megatrading train --stage pretrain --data build/demo-data/train.npz --out build/demo-pretrain \
		--preset tiny --steps 1500 --batch 32 --seed 1
	$(BIN)/megatrading train --stage finetune --data build/demo-data/train.npz --init build/demo-pretrain \
		--out build/demo-finetune --steps 1500 --batch 32 --seed 1
	mkdir -p $(CKPT) && cp build/demo-finetune/model.safetensors build/demo-finetune/config.json $(CKPT)/
	$(BIN)/megatrading evaluate --data build/demo-data/heldout.npz --model generative:$(CKPT) --out $(CKPT)/evaluation

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
