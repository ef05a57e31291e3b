#!/bin/sh
# check_gpu_restart: tests/check_restart_client again with the daemon on the
# cuda backend (restart without reload of VMM buffers from their stored fds,
# verify reading them back from the GPU); skipped (77) without a GPU.
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 || {
	echo "no GPU: skipped"
	exit 77
}
UW_TEST_BACKEND=cuda exec "${UW_TOP_BUILDDIR:-.}/tests/check_restart_client"
