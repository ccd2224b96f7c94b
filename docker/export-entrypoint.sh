#!/usr/bin/env bash
# One-shot export of the SHARP network into a Triton model repository on the shared volume.
#  - Uses the checkpoint at $MLSHARP_CHECKPOINT when that file exists (a mounted copy); otherwise
#    downloads the official one once into the torch hub cache ($TORCH_HOME/hub/checkpoints).
#    MLSHARP_EXPORT_RANDOM_WEIGHTS=1 exports a random-weight network instead (tests only).
#  - Runs `python -m export` into a staging folder on the same volume and swaps the finished
#    repository in with a rename, so Triton never sees half a repository; writes $MARKER last.
#    The repository is a folder inside $ROOT (the volume), never $ROOT itself: a volume's root
#    cannot be renamed. The export manifest is kept beside it; the intermediate ONNX files go.
#  - Skips the work when the marker holds the same export key: settings, the weights' sha256, the
#    installed mlsharp version and the repository contract's digest (an upgraded image whose
#    python models or configs changed re-exports). MLSHARP_EXPORT_FORCE=1 redoes it.
set -euo pipefail

ROOT="${MLSHARP_MODELS_ROOT:-/models}"
REPO="${MLSHARP_MODEL_REPOSITORY:-$ROOT/repository}"
MARKER="${MLSHARP_EXPORT_MARKER:-$ROOT/export-complete.json}"
PRESET="${MLSHARP_EXPORT_PRESET:-full}"
TARGET="${MLSHARP_EXPORT_TARGET:-gpu}"
PRECISION="${MLSHARP_EXPORT_PRECISION:-fp16}"
# torch (PyTorch on CUDA, the default), tensorrt or cuda; the old variable name still works
RUNTIME="${MLSHARP_EXPORT_GPU_RUNTIME:-${MLSHARP_EXPORT_GPU_ACCELERATOR:-torch}}"
CHECKPOINT="${MLSHARP_CHECKPOINT:-/checkpoints/sharp_2572gikvuh.pt}"
RANDOM_WEIGHTS="${MLSHARP_EXPORT_RANDOM_WEIGHTS:-0}"
SEED="${MLSHARP_EXPORT_SEED:-0}"
FORCE="${MLSHARP_EXPORT_FORCE:-0}"
# shellcheck disable=SC2206
EXTRA=(${MLSHARP_EXPORT_EXTRA_ARGS:-})

# The repository must be a strict sub-folder of the volume root (the swap renames it).
root_abs="$(realpath -m "$ROOT")"
repo_abs="$(realpath -m "$REPO")"
case "$repo_abs/" in
  "$root_abs"/?*/) ;;
  *)
    echo "export: the repository ($REPO) must be a folder inside the models volume ($ROOT), not the" \
      "volume itself or outside it: set MLSHARP_MODEL_REPOSITORY=$ROOT/repository" >&2
    exit 2 ;;
esac

args=(--preset "$PRESET" --target "$TARGET" --precision "$PRECISION" --formats onnx)
if [ "$TARGET" = "gpu" ]; then
  args+=(--gpu-runtime "$RUNTIME")
fi

if [ "$RANDOM_WEIGHTS" = "1" ]; then
  echo "export: RANDOM WEIGHTS (seed $SEED): for tests only, never a SHARP result"
  args+=(--random-weights --seed "$SEED")
  weights="random-seed-$SEED"
else
  if [ -f "$CHECKPOINT" ]; then
    echo "export: using mounted checkpoint $CHECKPOINT"
    ckpt="$CHECKPOINT"
  else
    ckpt="$(python -c 'from mlsharp.checkpoint import default_checkpoint_path; print(default_checkpoint_path())')"
    if [ -f "$ckpt" ]; then
      echo "export: using the cached official checkpoint $ckpt"
    else
      echo "export: no file at $CHECKPOINT; downloading the official checkpoint (~2.6 GB) to $ckpt"
      python -c 'from mlsharp.checkpoint import CHECKPOINT_URL, default_checkpoint_path, download_checkpoint
download_checkpoint(CHECKPOINT_URL, default_checkpoint_path())'
    fi
  fi
  args+=(--checkpoint "$ckpt")
  weights="sha256:$(sha256sum "$ckpt" | cut -d' ' -f1)"
fi
version="$(python -c 'import importlib.metadata as m; print(m.version("mlsharp"))')"
# The repository's contract (python models, config generators): a change re-exports even when the
# package version stayed the same.
contract="$(python -c 'from export.repository import contract_digest; print(contract_digest())')"
key="preset=$PRESET target=$TARGET precision=$PRECISION gpu_runtime=$RUNTIME weights=$weights mlsharp=$version contract=$contract extra=${EXTRA[*]}"

if [ "$FORCE" != "1" ] && [ -f "$MARKER" ] && [ -d "$REPO" ] && grep -qF "\"key\": \"$key\"" "$MARKER"; then
  echo "export: $REPO already holds this export ($key); nothing to do (MLSHARP_EXPORT_FORCE=1 redoes it)"
  exit 0
fi

staging="$ROOT/.staging-$$"
rm -rf "$ROOT"/.staging-*
mkdir -p "$staging"
trap 'rm -rf "$staging"' EXIT
echo "export: python -m export ${args[*]} ${EXTRA[*]} --out $staging/work --repository $staging/repository"
start=$(date +%s)
python -m export "${args[@]}" "${EXTRA[@]}" --out "$staging/work" --repository "$staging/repository"
if [ ! -d "$staging/repository" ]; then
  echo "export: python -m export wrote no repository" >&2
  exit 1
fi

rm -f "$MARKER"
mkdir -p "$(dirname "$repo_abs")"
if [ -d "$REPO" ]; then
  rm -rf "$REPO.old"
  mv "$REPO" "$REPO.old"
fi
mv "$staging/repository" "$REPO"
rm -rf "$REPO.old"
if [ -f "$staging/work/export_manifest.json" ]; then
  cp "$staging/work/export_manifest.json" "$ROOT/export_manifest.json"
fi
printf '{"key": "%s", "preset": "%s", "target": "%s", "precision": "%s", "weights": "%s", "mlsharp": "%s", "seconds": %d, "finished": "%s"}\n' \
  "$key" "$PRESET" "$TARGET" "$PRECISION" "$weights" "$version" "$(( $(date +%s) - start ))" \
  "$(date -u +%FT%TZ)" > "$MARKER"
echo "export: done, $(du -sh "$REPO" | cut -f1) in $REPO"
