#!/usr/bin/env bash
# One-shot export of the SHARP network into a Triton model repository on the shared volume.
#  - Uses the checkpoint at $MLSHARP_CHECKPOINT when that file exists (a mounted copy), else lets
#    `python -m export` download the official one into the torch hub cache ($TORCH_HOME).
#  - Writes into a staging folder and swaps it in with a rename, so Triton never sees half a
#    repository; writes $MARKER last. Skips the work when the marker says the same export is
#    already there (set MLSHARP_EXPORT_FORCE=1 to redo it).
set -euo pipefail

ROOT="${MLSHARP_MODELS_ROOT:-/models}"
REPO="${MLSHARP_MODEL_REPOSITORY:-$ROOT/repository}"
MARKER="${MLSHARP_EXPORT_MARKER:-$ROOT/export-complete.json}"
PRESET="${MLSHARP_EXPORT_PRESET:-full}"
TARGET="${MLSHARP_EXPORT_TARGET:-gpu}"
PRECISION="${MLSHARP_EXPORT_PRECISION:-fp16}"
CHECKPOINT="${MLSHARP_CHECKPOINT:-/checkpoints/sharp_2572gikvuh.pt}"
FORCE="${MLSHARP_EXPORT_FORCE:-0}"
# shellcheck disable=SC2206
EXTRA=(${MLSHARP_EXPORT_EXTRA_ARGS:-})

args=(--preset "$PRESET" --target "$TARGET" --precision "$PRECISION")
if [ -f "$CHECKPOINT" ]; then
  ckpt_id="file:$(basename "$CHECKPOINT"):$(stat -c %s "$CHECKPOINT")"
  args+=(--checkpoint "$CHECKPOINT")
  echo "export: using mounted checkpoint $CHECKPOINT"
else
  ckpt_id="official-download"
  echo "export: no file at $CHECKPOINT; the official checkpoint will be downloaded to ${TORCH_HOME:-~/.cache/torch}/hub/checkpoints"
fi
want="{\"preset\": \"$PRESET\", \"target\": \"$TARGET\", \"precision\": \"$PRECISION\", \"checkpoint\": \"$ckpt_id\", \"extra\": \"${EXTRA[*]}\"}"

if [ "$FORCE" != "1" ] && [ -f "$MARKER" ] && [ -d "$REPO" ] && grep -qF "${want%\}}," "$MARKER"; then
  echo "export: $REPO already holds this export ($want); nothing to do (MLSHARP_EXPORT_FORCE=1 redoes it)"
  exit 0
fi

staging="$ROOT/.staging-$$"
rm -rf "$staging"
mkdir -p "$staging"
trap 'rm -rf "$staging"' EXIT
echo "export: python -m export ${args[*]} ${EXTRA[*]} --out $staging"
start=$(date +%s)
python -m export "${args[@]}" "${EXTRA[@]}" --out "$staging"

rm -f "$MARKER"
if [ -d "$REPO" ]; then
  rm -rf "$REPO.old"
  mv "$REPO" "$REPO.old"
fi
mv "$staging" "$REPO"
rm -rf "$REPO.old"
printf '%s\n' "${want%\}}, \"seconds\": $(( $(date +%s) - start )), \"finished\": \"$(date -u +%FT%TZ)\"}" > "$MARKER"
echo "export: done, $(du -sh "$REPO" | cut -f1) in $REPO"
