#!/bin/sh
# check_gpu_integration: the whole-system suite (tests/check_integration)
# again, with the daemon on the cuda backend; skipped (77) without a GPU.
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 || {
	echo "no GPU: skipped"
	exit 77
}
UW_TEST_BACKEND=cuda exec "${UW_TOP_BUILDDIR:-.}/tests/check_integration"
