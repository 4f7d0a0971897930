#!/usr/bin/env bash
# The newest CPython 3 installed (pyenv's versions first, then what is on PATH), for `make test-newest`.
set -euo pipefail
{
  if command -v pyenv >/dev/null 2>&1; then
    for d in "$(pyenv root)"/versions/3.*; do [ -x "$d/bin/python3" ] && echo "$d/bin/python3"; done
  fi
  for p in python3.14 python3.13 python3.12 python3.11 python3; do command -v "$p" 2>/dev/null || true; done
} | while read -r py; do
  v=$("$py" -c 'import sys; print("%d.%03d" % sys.version_info[:2])' 2>/dev/null) && echo "$v $py"
done | sort -n | tail -1 | cut -d' ' -f2
