#!/usr/bin/env bash
# Stages the function app the way the Linux Functions host loads it, and zips it:
#
#   <out>/app/host.json
#   <out>/app/<Function>/function.json      for every top-level folder that has a function.json
#   <out>/app/<defaultExecutablePath>      the handler binary, mode 755
#   <out>/app.zip                          the same tree, Unix modes kept (the binary must stay executable)
#
# local.settings.json is never staged: it holds local connection strings and the Functions host ignores it
# in Azure anyway. azd deploys <out>/app (azure.yaml: dist: dist/app) and runs this as its prepackage hook.
#
# Usage: scripts/package.sh [--out DIR] [--debug | --binary PATH]
#   --out DIR      where to stage (default: dist/ at the repository root)
#   --debug        build and stage the debug binary (quick; for tests)
#   --binary PATH  stage this already-built binary instead of building one
#
# Target: x86_64-unknown-linux-gnu (the only Rust target installed; static musl is not available without
# downloading its standard library). See docs/deploy.md, "Build target", for the glibc version it needs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/dist"
profile=release
binary=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --debug) profile=debug; shift ;;
    --binary) binary="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "package: unknown argument $1" >&2; exit 2 ;;
  esac
done

cd "$root"

# The executable path the host starts, from host.json's customHandler.description.
exe="$(sed -n 's/.*"defaultExecutablePath"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' host.json | head -n1)"
if [[ -z "$exe" || "$exe" == /* || "$exe" == *..* ]]; then
  echo "package: host.json needs a relative customHandler.description.defaultExecutablePath (found '${exe}')" >&2
  exit 1
fi

if [[ -z "$binary" ]]; then
  if [[ "$profile" == release ]]; then
    cargo build --release --bin handler
  else
    cargo build --bin handler
  fi
  target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  binary="${target_dir:-$root/target}/$profile/handler"
fi
if [[ ! -f "$binary" ]]; then
  echo "package: no binary at $binary" >&2
  exit 1
fi

stage="$out/app"
rm -rf "$stage" "$out/app.zip"
mkdir -p "$stage"

cp host.json "$stage/host.json"
functions=()
for dir in */; do
  dir="${dir%/}"
  if [[ -f "$dir/function.json" ]]; then
    mkdir -p "$stage/$dir"
    cp "$dir/function.json" "$stage/$dir/function.json"
    functions+=("$dir")
  fi
done
if [[ ${#functions[@]} -eq 0 ]]; then
  echo "package: no function folders (*/function.json) found" >&2
  exit 1
fi

mkdir -p "$(dirname "$stage/$exe")"
cp "$binary" "$stage/$exe"
chmod 755 "$stage/$exe"

# Zip with Unix modes: `zip` keeps them; Python's zipfile (used when zip is missing) does too.
if command -v zip > /dev/null; then
  (cd "$stage" && zip -q -r -X "$out/app.zip" .)
else
  python3 - "$stage" "$out/app.zip" <<'PY'
import os, sys, zipfile
stage, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
    for base, _, files in os.walk(stage):
        for name in sorted(files):
            path = os.path.join(base, name)
            z.write(path, os.path.relpath(path, stage))
PY
fi

echo "package: staged ${functions[*]} and $exe ($profile) in $stage; zip at $out/app.zip"
