# Set-up steps for srkd_ext. The README's two commands are `make run` and `make test`.
# Each creates .venv, installs torch and the dependencies, builds the kernels, then runs.
#
# Variables: PY (python to create the venv with), VENV, TORCH_SPEC (default torch==2.13.0,
# the CPU build on this project's machines; on a GPU machine use a CUDA build, e.g.
# TORCH_SPEC=torch==2.14.1), TORCH_INDEX_URL (an extra wheel index for torch, e.g. the CPU
# wheel index of pytorch.org on machines that would otherwise get a CUDA build), RUN_ARGS
# (flags for `srkd run`), TEST_ARGS (flags for pytest).

PY ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
RUN_ARGS ?=
TEST_ARGS ?=
BIN := $(VENV)/bin
DEPS := numpy pyyaml tqdm matplotlib pytest pytest-benchmark hypothesis expecttest ninja "setuptools>=77" wheel ruff

.PHONY: setup build run test bench lint clean

$(VENV)/.installed:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC) $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL))
	$(BIN)/pip install -q $(DEPS)
	SRKD_NO_EXT=1 $(BIN)/pip install -q --no-build-isolation --no-deps -e .
	touch $@

setup: $(VENV)/.installed

# Incremental: ninja keeps object files in build/, so only changed kernels recompile.
# The compiler's lines go to build/build.log (shown only if the build fails), so the report
# of `make run` is not buried under them.
build: setup
	@mkdir -p build
	@echo "building the srkd_ext kernels (a few minutes on 2 cores the first time; log: build/build.log)"
	@$(BIN)/python setup.py -q build_ext --inplace > build/build.log 2>&1 || { cat build/build.log; exit 1; }
	$(BIN)/python -c "import srkd_ext; assert srkd_ext.kernels_available(); print('srkd_ext kernels built (CUDA:', srkd_ext.cuda_kernels_available(), ')')"

run: build
	$(BIN)/srkd run $(RUN_ARGS)

test: build
	$(BIN)/python -m pytest python_tests $(TEST_ARGS)

bench: build
	$(BIN)/python -m pytest benchmarks --benchmark-only $(TEST_ARGS)

lint: setup
	$(BIN)/ruff check srkd_ext python_tests benchmarks

clean:
	rm -rf build srkd_ext/_C*.so *.egg-info
