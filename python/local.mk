# python: the Python binding (python/unweight, ctypes over
# libunweight-client; pip install ./python) and its test against a real
# daemon. The Hugging Face example lives in examples/.
TESTS += tests/check_python.sh
EXTRA_DIST += tests/check_python.sh tests/check_python.py \
	python/pyproject.toml python/README.md python/unweight \
	examples/hf_llama.py examples/hf_llama-gpu.sh
