#!/bin/bash
# The man pages render without a troff warning (a line that begins with '.'
# or "'" is read as a request; an unknown one is a warning, and the text is
# lost). The package test checks the installed pages the same way; this one
# runs in seconds with the unit suite. Arguments: the pages.
set -u
fail=0
for m in "$@"; do
  if ! out=$(MANWIDTH=80 man --warnings -l "$m" 2>&1 >/dev/null); then
    echo "FAIL: man -l $m failed: $out"
    fail=1
  elif [ -n "$out" ]; then
    echo "FAIL: $m warns: $out"
    fail=1
  else
    echo "ok: $m"
  fi
done
exit $fail
