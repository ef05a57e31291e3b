#!/bin/bash
cd .carry/reg
F=/tmp/big.bin
# 8 GiB of non-zero data in the page cache
python3 - <<'PY'
import os
b = os.urandom(64 << 20)
with open('/tmp/big.bin', 'wb') as f:
    for i in range(128):
        f.write(b)
PY
cat $F > /dev/null
s=$(date +%s%N); cat $F > /dev/null; e=$(date +%s%N); echo "cat 8 GiB: $(( (e - s) / 1000000 )) ms"
for m in "0 1 64" "0 4 64" "0 8 64" "0 8 256" "0 16 64" "0 8 64 1" "1 4 64" "1 8 64" "1 16 64"; do
	timeout 60 ./regmap $F $m 2>&1
done
# second pass: registered again (pages already faulted?)
timeout 60 ./regmap $F 0 8 64
free -g | head -2
