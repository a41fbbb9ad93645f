#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The Debian package, end to end: builds keel's .deb from a copy of the
# source tree (dpkg-buildpackage -b, which runs `meson install`), installs it,
# checks what it installed (binaries, man pages, units and keeld's
# capability set, examples), validates
# the installed example configs with the installed keeld, verifies the units
# with systemd-analyze, and purges the package again, also on failure.
#
#   tests/package/deb_test.sh SOURCE_DIR
#
# Exit 77 (meson: skipped) without root, or when a keel package is already
# installed (this test never replaces someone's install); as root, missing
# dpkg-buildpackage or systemd-analyze (scripts/install-deps installs both)
# fails it.
# The copy is built in a fixed directory so that ccache hits on the next run
# (dpkg's build flags embed the build path); a lock keeps two runs apart.
# It is built without -g (DEB_C*FLAGS_STRIP): with noddebs dh_strip throws
# the debug info away, so the installed binaries hold the same code, and the
# build takes about a third less CPU (daemon_backend.cc: 27 s -> 18.5 s).
set -euo pipefail

SRC=$(cd "${1:?usage: deb_test.sh SOURCE_DIR}" && pwd)
WORK=/var/tmp/keel-deb-test
START=$(date +%s)

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "==> $* (+$(( $(date +%s) - START ))s)"; }

[ "$(id -u)" -eq 0 ] || skip "needs root (dpkg -i)"
# scripts/test installs these: missing as root is a broken set-up, not a skip.
command -v dpkg-buildpackage >/dev/null || fail "dpkg-buildpackage missing (apt install dpkg-dev debhelper)"
if dpkg-query -W -f='${Status}' keel 2>/dev/null | grep -q "ok installed"; then
  skip "a keel package is already installed; not touching it"
fi

mkdir -p "$WORK"
exec 9>"$WORK/lock"
flock -w 1200 9 || fail "another package test holds $WORK/lock"

installed=0
cleanup() {
  rc=$?
  if [ "$installed" = 1 ]; then
    dpkg --purge keel >/dev/null 2>&1 || echo "warning: dpkg --purge keel failed" >&2
  fi
  rm -rf "$WORK/keel" "$WORK"/keel_* "$WORK"/keel-dbgsym_*
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "copying the source tree to $WORK/keel"
rm -rf "$WORK/keel" "$WORK"/keel_* "$WORK"/keel-dbgsym_*
mkdir -p "$WORK/keel"
# A clone owned by another user (a user's clone, `sudo scripts/test`) is
# "dubious ownership" to git as root, which then answers nothing: trusted
# for these two reads, else the fallback below copied every untracked file
# (all but ./build* and .git).
if git -c safe.directory="*" -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
  # Tracked and new (not ignored) files: what a commit of this tree would hold.
  (cd "$SRC" && git -c safe.directory="*" ls-files -z --cached --others --exclude-standard \
     | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
     | tar --null -T - -cf -) | tar -xf - -C "$WORK/keel"
else
  (cd "$SRC" && tar --exclude='./build*' --exclude=./.git -cf - .) | tar -xf - -C "$WORK/keel"
fi

step "dpkg-buildpackage -us -uc -b (nocheck; log: $WORK/build.log)"
ccache_dir=$(ccache -k cache_dir 2>/dev/null || true)
if ! (cd "$WORK/keel" &&
      env DEB_BUILD_OPTIONS="nocheck noddebs parallel=$(nproc)" DEB_CFLAGS_STRIP=-g DEB_CXXFLAGS_STRIP=-g \
          ${ccache_dir:+CCACHE_DIR="$ccache_dir"} CCACHE_BASEDIR="$WORK/keel" \
          dpkg-buildpackage -us -uc -b) >"$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log" >&2
  fail "dpkg-buildpackage failed"
fi
deb=$(ls "$WORK"/keel_*_amd64.deb 2>/dev/null | head -1)
[ -n "$deb" ] || fail "no keel_*_amd64.deb in $WORK"
echo "    built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"

step "dpkg -i"
installed=1
dpkg -i "$deb" >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log" >&2; fail "dpkg -i failed"; }

step "installed files"
want=(/usr/sbin/keeld /usr/bin/keelctl /usr/sbin/keel-decap
      /usr/share/man/man8/keelctl.8.gz /usr/share/man/man8/keel-decap.8.gz
      /lib/systemd/system/keeld.service /lib/systemd/system/keel-decap@.service
      /usr/share/doc/keel/examples/ipip.yaml /usr/share/doc/keel/examples/l2dsr.yaml
      /usr/share/doc/keel/examples/90-keel-balancer.conf /usr/share/doc/keel/examples/90-keel-real.conf
      /usr/share/doc/keel/examples/keeld-dpdk.conf
      /usr/share/doc/keel/examples/prometheus/prometheus.yml /usr/share/doc/keel/examples/prometheus/keel-alerts.yml
      /usr/share/man/man8/keeld.8.gz
      /usr/share/doc/keel/operations.md /usr/share/doc/keel/configuration.md /etc/keel)
for f in "${want[@]}"; do
  [ -e "$f" ] || fail "$f not installed by the package"
  dpkg -S "$f" >/dev/null 2>&1 || [ -d "$f" ] || fail "$f exists but does not belong to the package"
done
/usr/sbin/keeld --version | grep -q "^keeld " || fail "keeld --version"
/usr/bin/keelctl --version | grep -q "^keelctl " || fail "keelctl --version"
/usr/sbin/keel-decap --help | grep -q "keel-decap attach" || fail "keel-decap --help"
for m in /usr/share/man/man8/keel*.8.gz; do
  out=$(MANWIDTH=80 man --warnings -l "$m" 2>&1 >/dev/null) || fail "man $m failed"
  [ -z "$out" ] || fail "man $m warns: $out"
done
# Least privilege: the installed unit grants exactly the set of the source
# unit, which tests/integration/test_privileges.py reads and runs keeld with
# (no CAP_SYS_ADMIN; adoption works from the pins).
want_caps=$(sed -n "s/^CapabilityBoundingSet=//p" "$SRC/deploy/keeld.service.in")
[ -n "$want_caps" ] || fail "deploy/keeld.service.in has no CapabilityBoundingSet"
grep -q CAP_SYS_ADMIN <<<"$want_caps" && fail "deploy/keeld.service.in grants CAP_SYS_ADMIN"
for key in CapabilityBoundingSet AmbientCapabilities; do
  got=$(sed -n "s/^$key=//p" /lib/systemd/system/keeld.service)
  [ "$got" = "$want_caps" ] || fail "keeld.service $key is '$got', want '$want_caps'"
done
# keeld keeps its runtime changes, a clean stop's health states and the DPDK
# connection tables beside its socket in /run/keel, for the next keeld:
# systemd must not remove that directory when the unit stops.
got=$(sed -n "s/^RuntimeDirectoryPreserve=//p" /lib/systemd/system/keeld.service)
[ "$got" = yes ] || fail "keeld.service RuntimeDirectoryPreserve is '$got', want 'yes' (systemctl stop would lose keelctl's changes)"
systemctl is-enabled keeld >/dev/null 2>&1 && fail "the package enabled keeld (it must not start without a config)"

step "keeld --check-config on the installed examples"
for ex in /usr/share/doc/keel/examples/*.yaml; do
  /usr/sbin/keeld --no-host-checks --check-config "$ex" || fail "$ex does not validate"
  # The host checks really run without the flag: in a fresh network namespace
  # (only lo) eth0 is missing; with an eth0 (a veth) the example is valid.
  out=$(unshare --net /usr/sbin/keeld --check-config "$ex" 2>&1) && fail "$ex passed without eth0: $out"
  grep -q "no such network interface" <<<"$out" || fail "unexpected error for $ex: $out"
  unshare --net sh -ec "ip link add eth0 type veth peer name eth0-peer; /usr/sbin/keeld --check-config '$ex'" \
    || fail "$ex does not validate on a host with eth0"
done
# And a broken copy is refused with its file:line.
sed 's/weight: 100/weight: lots/' /usr/share/doc/keel/examples/ipip.yaml >"$WORK/broken.yaml"
out=$(/usr/sbin/keeld --no-host-checks --check-config "$WORK/broken.yaml" 2>&1) && fail "broken config accepted"
grep -q "broken.yaml:[0-9]*: .*weight" <<<"$out" || fail "no file:line for the broken config: $out"
rm -f "$WORK/broken.yaml"

if command -v systemd-analyze >/dev/null; then
  step "systemd-analyze verify"
  mkdir -p "$WORK/units"
  ln -sf /lib/systemd/system/keel-decap@.service "$WORK/units/keel-decap@eth0.service"
  # keeld.service with the DPDK drop-in beside it (verify reads the .d of
  # the directory the unit is given from).
  mkdir -p "$WORK/units/dpdk/keeld.service.d"
  cp /lib/systemd/system/keeld.service "$WORK/units/dpdk/"
  cp /usr/share/doc/keel/examples/keeld-dpdk.conf "$WORK/units/dpdk/keeld.service.d/dpdk.conf"
  for unit in /lib/systemd/system/keeld.service "$WORK/units/keel-decap@eth0.service" \
              "$WORK/units/dpdk/keeld.service"; do
    out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=yes "$unit" 2>&1) \
      || fail "systemd-analyze verify $unit: $out"
    # verify warns without failing on unknown keys and bad values: catch those.
    if grep -v "Failed to .*cgroup\|/proc/self\|Failed to connect" <<<"$out" | grep -q .; then
      fail "systemd-analyze verify $unit: $out"
    fi
  done
  rm -rf "$WORK/units"
else
  fail "systemd-analyze missing (apt install systemd): the units are not verified"
fi

step "dpkg --purge"
dpkg --purge keel >/dev/null || fail "dpkg --purge keel"
installed=0
[ ! -e /usr/sbin/keeld ] || fail "keeld still there after purge"
step "OK: the package builds, installs, validates its examples and purges"
