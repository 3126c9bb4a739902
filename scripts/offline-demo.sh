#!/usr/bin/env bash
# Offline walk-through of the CLI: keys, records, signing, verification, tampering.
set -euo pipefail
bin=".venv/bin"
dir="demo-run/offline"
rm -rf "$dir" && mkdir -p "$dir"
"$bin/eodes-node" keygen --out "$dir" --name kr >/dev/null
"$bin/eodes-node" sample --count 5 --agreement KCFTA > "$dir/records.jsonl"
"$bin/eodes-node" validate "$dir/records.jsonl"
head -n 1 "$dir/records.jsonl" > "$dir/record.json"
"$bin/eodes-node" sign --key "$dir/kr.key.pem" --type coo --sender KR --receiver CN \
  "$dir/record.json" > "$dir/coo.jws"
echo "signed: $(wc -c < "$dir/coo.jws") bytes of compact JWS"
"$bin/eodes-node" verify --jwks "$dir/kr.jwks.json" --type coo --sender KR --receiver CN \
  "$dir/coo.jws" > "$dir/verified.json"
echo "verified: $(grep -m1 certificate_number "$dir/verified.json" | tr -d ' ,')"
# Flip one character of the payload: the verifier must refuse it.
python3 - "$dir/coo.jws" > "$dir/tampered.jws" <<'PY'
import sys
token = open(sys.argv[1]).read().strip()
head, payload, sig = token.split(".")
i = len(payload) // 2
payload = payload[:i] + ("A" if payload[i] != "A" else "B") + payload[i + 1:]
print(".".join((head, payload, sig)))
PY
if "$bin/eodes-node" verify --jwks "$dir/kr.jwks.json" "$dir/tampered.jws" 2>"$dir/why"; then
  echo "demo: FAILED, a tampered envelope was accepted"; exit 1
fi
echo "tampered: $(cat "$dir/why")"
echo "demo: offline sign/verify walk-through passed"
