# Shared by the command-line tests (sourced): check DESC RC SUBSTRING ARGS...
# runs "$CLI" ARGS..., and records a failure in $fail unless it exits RC with
# SUBSTRING somewhere in its output (stdout and stderr).
fail=0
check() {  # description, expected rc, expected output substring, args...
  local desc=$1 want_rc=$2 want_out=$3
  shift 3
  local out rc
  out=$("$CLI" "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want_rc" ] || [[ "$out" != *"$want_out"* ]]; then
    echo "FAIL: $desc: rc=$rc (want $want_rc, output containing '$want_out'), output:"
    echo "$out"
    fail=1
  else
    echo "ok: $desc"
  fi
}
