# Kodcu: `make run` starts the desktop app, `make test` runs the whole test suite.
# `make bundle` freezes the app for this OS into dist/kodcu/ (packaging/README.md);
# `make bundle-test` builds it if needed and checks it as a first-time user meets it.
# Both create .venv and install what they need on first use; later runs install nothing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 0.3.36

# llama.cpp is compiled from source when llama-cpp-python installs. Its default build
# uses -march=native, which on some x86 CPUs (seen with AMX under a hypervisor that
# does not enable it) compiles instructions the machine then refuses. Build for an
# AVX2 baseline instead, plus the AVX-512 and VNNI extensions that Linux reports this
# CPU (and its kernel) supports: on CPUs that have them, prompt processing runs about
# 1.8 times as fast (benchmarks/evaluate.py). Never AMX. Override LLAMA_CMAKE_ARGS for
# another target (for example -DGGML_CUDA=ON on a GPU machine).
ifeq ($(shell uname -m),x86_64)
CPU_FLAGS := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
cpu_has = $(if $(filter $(1),$(CPU_FLAGS)),$(2))
# ggml's GGML_AVX512 compiles for F, CD, VL, DQ and BW together.
LLAMA_AVX512 := $(if $(filter 5,$(words $(filter avx512f avx512cd avx512vl avx512dq avx512bw,$(CPU_FLAGS)))),\
	-DGGML_AVX512=ON $(call cpu_has,avx512vbmi,-DGGML_AVX512_VBMI=ON) \
	$(call cpu_has,avx512_vnni,-DGGML_AVX512_VNNI=ON) $(call cpu_has,avx512_bf16,-DGGML_AVX512_BF16=ON))
LLAMA_CMAKE_ARGS ?= $(strip -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON $(call cpu_has,avx_vnni,-DGGML_AVX_VNNI=ON) $(LLAMA_AVX512))
else
LLAMA_CMAKE_ARGS ?=
endif
# packaging/build_llama.py applies these to llama.cpp's source before compiling it; each
# says what it changes and why (a faster AVX-512 kernel, bit-identical results).
LLAMA_PATCHES := $(sort $(wildcard packaging/llama-patches/*.patch))
# The wheel is kept outside the checkout, keyed by its build flags and patches, so a
# fresh clone on the same machine does not compile llama.cpp again.
LLAMA_WHEEL_DIR := $(HOME)/.cache/kodcu-build/llama-cpp-python-$(LLAMA_VERSION)-$(shell { printf '%s' '$(LLAMA_CMAKE_ARGS)'; cat $(LLAMA_PATCHES) /dev/null; } | cksum | cut -d' ' -f1)

.PHONY: run test lint bench clean bundle bundle-test coder

$(VENV)/.python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Kodcu needs Python 3.10 or newer; set PYTHON=python3.x"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	touch $@

$(LLAMA_WHEEL_DIR)/.built: | $(VENV)/.python
	@command -v $${CXX:-c++} >/dev/null || { echo "Kodcu compiles llama.cpp and needs a C/C++ compiler:" \
		"sudo apt install build-essential (Debian/Ubuntu), xcode-select --install (macOS)."; exit 1; }
	@echo "Building llama-cpp-python $(LLAMA_VERSION) (llama.cpp from source, a few minutes, once)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python packaging/build_llama.py $(LLAMA_VERSION) $(LLAMA_WHEEL_DIR)
	touch $@

# One stamp per dependency set: editing pyproject.toml reinstalls, nothing else does.
$(VENV)/.installed-app: pyproject.toml $(LLAMA_WHEEL_DIR)/.built | $(VENV)/.python
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps $(LLAMA_WHEEL_DIR)/llama_cpp_python-*.whl
	$(BIN)/python -m pip install --quiet --find-links $(LLAMA_WHEEL_DIR) --only-binary llama-cpp-python -e .
	touch $@

# The tests train tiny models: torch is pinned first so that pip takes the CPU build
# (a bare `torch` requirement would pull a CUDA build of several GB).
TORCH_SPEC ?= torch==2.13.0

$(VENV)/.installed-dev: $(VENV)/.installed-app
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --find-links $(LLAMA_WHEEL_DIR) --only-binary llama-cpp-python \
		-e ".[dev,train,convert,eval,bench]"
	touch $@

run: $(VENV)/.installed-app
	$(BIN)/kodcu

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/engine.py

# Kodcu Coder 270M (MODEL_CARD.md): train the adapter, convert it to a LoRA GGUF, and
# score base and adapter on HumanEval and MBPP with base and chat prompts. CODER_BASE and
# MBPP may name local copies (a Hugging Face folder of Gemma 3 270M, an mbpp.jsonl);
# RESUME=1 continues an interrupted training run. The adapter Kodcu ships is the GGUF
# this writes, copied to kodcu/adapters/kodcu-coder-270m-lora.gguf.
CODER_BASE ?= google/gemma-3-270m
MBPP ?=
CODER_OUT ?= runs/kodcu-coder-270m
CODER_DATA = $(if $(MBPP),data.sources.0.path=$(MBPP) data.sources.1.path=$(MBPP) \
	data.sources.2.path=$(MBPP) hygiene.mbpp_path=$(MBPP))

coder: $(VENV)/.installed-dev
	$(BIN)/kodcu-train trainer/configs/kodcu-coder-270m.yaml $(if $(RESUME),--resume) \
		model.base=$(CODER_BASE) training.output_dir=$(CODER_OUT)/adapter $(CODER_DATA)
	$(BIN)/kodcu-convert $(CODER_OUT)/adapter --out $(CODER_OUT)/gguf --lora-only \
		--name kodcu-coder-270m --overwrite
	model=$$($(BIN)/python -m kodcu.default_model) && \
	for benchmark in humaneval mbpp; do for prompt in base instruct; do \
		for side in base coder; do \
			$(BIN)/kodcu-eval --benchmark $$benchmark \
				$(if $(MBPP),$$([ $$benchmark = mbpp ] && echo --mbpp $(MBPP))) \
				--prompt $$prompt --model $$model --out $(CODER_OUT)/scores/$$benchmark-$$prompt-$$side \
				$$([ $$side = coder ] && echo --adapter $(CODER_OUT)/gguf/kodcu-coder-270m-lora-F16.gguf) \
				|| exit 1; \
		done; \
		$(BIN)/kodcu-eval compare --plot $(CODER_OUT)/scores/$$benchmark-$$prompt.png \
			$(CODER_OUT)/scores/$$benchmark-$$prompt-base $(CODER_OUT)/scores/$$benchmark-$$prompt-coder; \
	done; done

# The bundle holds only the app's own dependencies (packaging/freeze_config.py keeps the
# training stack out even when it is installed in the same venv).
$(VENV)/.installed-bundle: $(VENV)/.installed-app
	$(BIN)/python -m pip install --quiet --find-links $(LLAMA_WHEEL_DIR) --only-binary llama-cpp-python \
		-e ".[bundle]"
	touch $@

BUNDLE_SOURCES := $(wildcard desktop/*.py kodcu/*.py kodcu/*/*.py kodcu/adapters/*.gguf) pyproject.toml \
	packaging/kodcu.spec packaging/entry.py packaging/freeze_config.py packaging/build.py

build/bundle.stamp: $(BUNDLE_SOURCES) $(VENV)/.installed-bundle
	$(BIN)/python packaging/build.py
	touch $@

bundle: build/bundle.stamp

bundle-test: build/bundle.stamp
	$(BIN)/python packaging/bundle_test.py dist/kodcu

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build/pyinstaller build/bundle.stamp dist/kodcu dist/kodcu-size.md
