#!/bin/sh
# deps.sh: install the Debian 12 packages unweight builds and tests with.
# python3-numpy is for the Python binding's test (tests/check_python.sh).
# The CUDA Toolkit is optional and never installed here: configure finds it
# under /usr/local/cuda when present.
set -eu
pkgs="build-essential autoconf automake libtool pkg-config liburing-dev
libsystemd-dev libzstd-dev check valgrind python3-numpy"
missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends $missing
