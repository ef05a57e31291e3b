#!/bin/sh
# check_gpu_stories: tests/check_stories.sh again with the daemon on the cuda
# backend: the worker must tell the reference's story; skipped (77) without
# a GPU.
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 || {
	echo "no GPU: skipped"
	exit 77
}
UW_TEST_BACKEND=cuda exec sh "${UW_TOP_SRCDIR:-.}/tests/check_stories.sh"
