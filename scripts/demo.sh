#!/bin/sh
# demo.sh: the main job. Install dependencies, build, start unweightd on a
# private socket, load the bundled stories260K model, and run the example
# worker, which computes every linear layer with uw_matmul on the weights it
# attached from the daemon. Uses the CUDA backend when a GPU is usable.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/deps.sh
scripts/build.sh build
backend=host
if grep -q "define HAVE_CUDA 1" build/config.h && nvidia-smi -L >/dev/null 2>&1; then
	backend=cuda
fi
exec examples/run-demo.sh --build build --backend "$backend" "$@"
