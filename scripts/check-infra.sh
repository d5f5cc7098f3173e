#!/usr/bin/env bash
# Static checks of infra/: every Bicep file must parse (pycep-parser) and pass checkov's Bicep checks,
# except the findings listed with a reason in infra/checkov-skips.txt.
#
# Installs its tools into .local/infra-venv (gitignored) on first use; later runs reuse them.
# Usage: scripts/check-infra.sh            (from anywhere in the repository)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.local/infra-venv"
# Pinned so that a fresh CI install checks what was checked here. checkov brings pycep-parser.
checkov_version="3.3.30"

if [[ ! -x "$venv/bin/checkov" ]] || [[ "$("$venv/bin/checkov" --version 2>/dev/null)" != "$checkov_version" ]]; then
  echo "check-infra: installing checkov $checkov_version into $venv"
  start=$SECONDS
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$checkov_version"
  echo "check-infra: installed in $((SECONDS - start)) s"
fi

mapfile -t files < <(find "$root/infra" -name '*.bicep' | sort)
if [[ ${#files[@]} -eq 0 ]]; then
  echo "check-infra: no Bicep files under infra/" >&2
  exit 1
fi

echo "check-infra: parsing ${#files[@]} Bicep files"
"$venv/bin/python" - "${files[@]}" <<'PY'
import sys
from pathlib import Path
from pycep import BicepParser

failed = 0
for name in sys.argv[1:]:
    try:
        tree = BicepParser().parse(file_path=Path(name))
    except Exception as e:  # lark reports the line and column of the first bad token
        failed += 1
        print(f"PARSE FAILED {name}: {str(e).splitlines()[0]}", file=sys.stderr)
        continue
    if not any(tree.get(k) for k in ("resources", "modules", "parameters")):
        failed += 1
        print(f"PARSE EMPTY {name}: no parameters, resources or modules", file=sys.stderr)
    else:
        print(f"parsed {Path(name).relative_to(Path.cwd()) if Path(name).is_relative_to(Path.cwd()) else name}")
sys.exit(1 if failed else 0)
PY

skips="$(grep -v '^\s*#' "$root/infra/checkov-skips.txt" | awk 'NF {print $1}' | paste -sd, -)"
echo "check-infra: checkov --framework bicep (skipping ${skips:-nothing}; reasons in infra/checkov-skips.txt)"
# --skip-download: no calls to the vendor's platform (the network is not reachable, and the run must not
# depend on it). checkov exits non-zero on any failed check or parsing error.
set +e
"$venv/bin/checkov" --directory "$root/infra" --framework bicep --compact --quiet --skip-download \
  ${skips:+--skip-check "$skips"} > "$root/.local/checkov.out" 2>&1
status=$?
set -e
cat "$root/.local/checkov.out"
if grep -Eq 'Parsing errors: [1-9]' "$root/.local/checkov.out"; then
  echo "check-infra: checkov could not parse a file" >&2
  exit 1
fi
if [[ $status -ne 0 ]]; then
  echo "check-infra: checkov found problems (exit $status)" >&2
  exit "$status"
fi
echo "check-infra: ok"
