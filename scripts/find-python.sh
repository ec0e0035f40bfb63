#!/usr/bin/env bash
# Prints the path of a Python 3.12 interpreter: python3.12 on PATH, else pyenv's.
set -euo pipefail
for candidate in "${PYTHON:-}" "$(command -v python3.12 || true)"; do
  if [ -n "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
    echo "$candidate"; exit 0
  fi
done
if command -v pyenv >/dev/null 2>&1; then
  for version in $(pyenv versions --bare | grep -E '^3\.12(\.|$)' | sort -rV); do
    echo "$(pyenv prefix "$version")/bin/python3.12"; exit 0
  done
fi
for candidate in "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
  [ -x "$candidate" ] && { echo "$candidate"; exit 0; }
done
echo "Python 3.12 not found: install it (pyenv install 3.12) or set PYTHON=/path/to/python3.12" >&2
exit 1
