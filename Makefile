# `make run`: set up .venv and run the default experiment suite on the embedded data.
# `make test`: set up .venv and run the whole test suite (what .ci/run calls).
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean
$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh all,test,ray,trackers,hf,lightning,peers
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/optprobe run

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/python -m pytest -q --cov=optprobe --cov-report=term:skip-covered

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache .coverage
