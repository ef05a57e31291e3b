#!/bin/sh
# check_python: runs tests/check_python.py (the Python binding against a real
# unweightd) with Debian's python3 and the library of this build. Skipped
# (77) where python3 has no NumPy, or the build has no shared library
# (configure --disable-shared): ctypes can load only a shared one.
set -eu
src=${UW_TOP_SRCDIR:?UW_TOP_SRCDIR: the source tree}
build=${UW_TOP_BUILDDIR:?UW_TOP_BUILDDIR: the build tree}

py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || { echo "no python3: skipped"; exit 77; }
"$py" -c "import numpy" 2>/dev/null || { echo "$py has no numpy: skipped"; exit 77; }

lib=$build/.libs/libunweight-client.so.0
if [ ! -f "$lib" ]; then
	if grep -q '^build_libtool_libs=no' "$build/libtool" 2>/dev/null; then
		echo "the build has no shared library (--disable-shared): skipped"
		exit 77
	fi
	echo "FAIL: $lib not built" >&2
	exit 1
fi
UNWEIGHT_LIB=$lib PYTHONPATH=$src/python${PYTHONPATH:+:$PYTHONPATH} \
	PYTHONDONTWRITEBYTECODE=1 exec "$py" "$src/tests/check_python.py"
