#!/usr/bin/env bash
# Re-create the embedded default model (checkpoints/codegeex-mini) from scratch with this project's own pipeline.
#
#   data_prep/default_model.sh [WORK_DIR]     (default data/default_model; env: PYTHON)
#
# 1. the local multilingual corpus (data_prep/local_corpus.sh, CodeGeeX tokenizer; its manifest lists the trees)
# 2. an 8,192-token sentencepiece code tokenizer trained on 40 MB sampled across those trees
# 3. the corpus prepared again with that tokenizer, 1024-token packed windows
# 4. train.py with model_configs/codegeex_mini.yaml (250 steps of 8 x 1024 tokens; about 80 minutes on 2 cores)
# 5. int8 weight-only quantization (fp16 embeddings) with the tokenizer bundled into the folder
# Every step resumes or skips when its output exists. The last step replaces checkpoints/codegeex-mini except its
# MODEL_CARD.md, card.json and plots, which are written by hand from bench/model_card_stats.py and
# eval_humaneval_x.py (see the model card).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-data/default_model}
PYTHON=${PYTHON:-python}
export LOG_MF_PATH=${LOG_MF_PATH:-$WORK/logs}

[ -f "$WORK/corpus/shards/manifest.json" ] || PYTHON=$PYTHON data_prep/local_corpus.sh "$WORK/corpus"
[ -f "$WORK/tokenizer/tokenizer.model" ] || $PYTHON data_prep/train_tokenizer.py \
    --corpus "$WORK/corpus/shards/manifest.json" --vocab-size 8192 --max-bytes 40000000 --out "$WORK/tokenizer"
inputs=$($PYTHON -c 'import json,sys; c=json.load(open(sys.argv[1]))["command"]; print(" ".join(f"--input {v}" for f, v in zip(c, c[1:]) if f == "--input"))' "$WORK/corpus/shards/manifest.json")
# shellcheck disable=SC2086
$PYTHON data_prep/prepare_corpus.py $inputs --tokenizer "$WORK/tokenizer" --out "$WORK/spm_shards" --seq-len 1024
if [ -d "$WORK/run" ]; then
    $PYTHON train.py --resume "$WORK/run"
else
    $PYTHON train.py --config model_configs/codegeex_mini.yaml --data "$WORK/spm_shards" --out "$WORK/run"
fi
last=$(ls -d "$WORK"/run/checkpoints/step-* | sort | tail -n 1)
rm -rf "$WORK/int8"
$PYTHON -m codegeex_ms.quantize_export quantize "$last" "$WORK/int8" --dtype float16 --bundle-tokenizer
mkdir -p checkpoints/codegeex-mini
cp -r "$WORK/int8/." checkpoints/codegeex-mini/
cp "$WORK/run/loss.png" checkpoints/codegeex-mini/loss.png
echo "checkpoints/codegeex-mini <- $last (int8)"
