#!/usr/bin/env bash
# CI: the Debian package (issue 7), as root on a Debian 12 machine.
#  1. Builds circbuf (clang-release settings, tests off, prefix /usr) in
#     build/pkg-clang, shared with .ci/consumer.sh, and `cpack` makes
#     build/pkg-clang/circbuf_<version>_<arch>.deb; prints its control data
#     and checks its contents.
#  2. A clean Debian 12 chroot with only a compiler toolchain in it (clang-19,
#     clang-tools-19, ninja-build, cmake >= 3.28 from bookworm-backports)
#     is created once and cached in ${CIRCBUF_DEB_CHROOT:-/var/cache/circbuf/bookworm}
#     (debootstrap --variant=minbase from the host's Debian mirror; about a
#     minute; the lock is <dir>.lock, the log <dir>.log). --remove deletes it.
#  3. Every run works in a throw-away overlay on top of the cached chroot (a
#     copy where overlayfs is missing), so the cache stays clean: there
#     `apt-get install ./circbuf_*.deb` must pull the dependencies (spdlog)
#     from apt, and examples/consumer is built against the package
#     (find_package from /usr, no CMAKE_PREFIX_PATH) and run.
# Mounts are made in a private mount namespace (unshare) and undone by an
# EXIT trap, as in toolchains/gcc-chroot.sh. Downloaded .debs are cached in
# <dir>-archives between runs.
set -euo pipefail
self=$(readlink -f "${BASH_SOURCE[0]}")
cd "$(dirname "$self")/.."
src=$(pwd -P)
export PATH="$PATH:/usr/sbin:/sbin"

base=$(readlink -m "${CIRCBUF_DEB_CHROOT:-/var/cache/circbuf/bookworm}")
archives=$base-archives
lock_file=$base.lock
log_file=$base.log
marker=$base/.circbuf-ready
suite=bookworm
packages=(clang-19 clang-tools-19 ninja-build)  # + cmake from bookworm-backports
chroot_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
build=build/pkg-clang

section() { printf '\n=== deb: %s (%s) ===\n' "$1" "$(date -u +%H:%M:%S)"; }
say() { echo "deb: $*" >&2; }
die() { echo "deb: FAILED: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, mount, chroot)"
[[ $base == /?*/?* && $base != "$src" && $base != "$src"/* ]] || die "bad chroot directory '$base'"

mounted=()
mount_at() {  # mount arguments..., target last
  mkdir -p "${!#}"
  mount "$@"
  mounted+=("${!#}")
}
unmount_all() {
  local i
  for (( i = ${#mounted[@]} - 1; i >= 0; i-- )); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true
  done
  mounted=()
}
tmp=
cleanup() {
  unmount_all
  if [[ -n $tmp ]] && ! grep -qF " $tmp" /proc/self/mountinfo; then rm -rf --one-file-system -- "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ ${1:-} == --remove ]]; then
  exec 9>>"$lock_file"; flock 9
  grep -qF " $base/" /proc/self/mountinfo && die "something is mounted below $base"
  rm -rf --one-file-system -- "$base" "$base.tmp" "$archives" "$log_file"
  exit 0
fi

# ---- 1. the package ------------------------------------------------------------
if [[ -z ${_CIRCBUF_DEB_NS:-} ]]; then
  section "build the package (cpack) in $build"
  start=$SECONDS
  cmake --preset clang-release -B "$build" -DCIRCBUF_BUILD_TESTS=OFF -DCIRCBUF_BUILD_BENCHMARKS=OFF \
    -DCIRCBUF_BUILD_TOOLS=ON -DCIRCBUF_BUILD_EXAMPLES=ON -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
  cmake --build "$build"
  rm -f "$build"/circbuf_*.deb
  (cd "$build" && cpack -G DEB >/dev/null)
  deb=$(ls "$build"/circbuf_*.deb)
  dpkg-deb --field "$deb"
  contents=$(dpkg-deb --contents "$deb" | awk '{print $6}')
  for f in ./usr/bin/circbuf ./usr/include/circbuf/modules/circbuf.cppm ./usr/include/circbuf.h \
           ./usr/lib/python3/dist-packages/circbuf/__init__.py; do
    grep -qx "$f" <<<"$contents" || die "$deb lacks $f"
  done
  for f in libcircbuf.a libcircbuf.so.0 circbufConfig.cmake circbufConfigVersion.cmake circbufTargets.cmake; do
    grep -q "/$f\$" <<<"$contents" || die "$deb lacks $f"
  done
  if grep -qE '\.(hpp|cpp)$' <<<"$contents"; then die "$deb holds a header or implementation unit"; fi
  dpkg-deb --field "$deb" Depends | grep -q libspdlog-dev || die "$deb does not depend on libspdlog-dev"
  # `circbuf bridge` links the NATS C client: dpkg-shlibdeps must have added
  # its run-time package (`circbuf --help` in the clean chroot below then
  # proves that apt pulls it in).
  if grep -q '^CIRCBUF_BUILD_BRIDGE:BOOL=ON' "$build/CMakeCache.txt"; then
    dpkg-deb --field "$deb" Depends | grep -q libnats || die "$deb: the tool links libnats but does not depend on it"
  fi
  echo "package built in $((SECONDS - start)) s: $deb"
  # The rest in a private mount namespace: mounts never leak to the host.
  export _CIRCBUF_DEB_NS=$deb
  exec unshare --mount --propagation private -- bash "$self" "$@"
fi
deb=$_CIRCBUF_DEB_NS
unset _CIRCBUF_DEB_NS

# ---- 2. the cached clean Debian 12 chroot ------------------------------------------
host_mirror() {  # as in toolchains/gcc-chroot.sh
  local m
  m=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [[ -z $m ]]; then
    m=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|ftp|file):/ && $i !~ /security/) { print $i; exit } }' \
          /etc/apt/sources.list 2>/dev/null || true)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}
in_chroot() {  # root, command...
  local root=$1
  shift
  chroot "$root" /usr/bin/env -i PATH="$chroot_path" HOME=/root TERM=dumb DEBIAN_FRONTEND=noninteractive "$@" 9>&-
}
log_failure() { tail -n 25 "$log_file" >&2 || true; die "$1 (full log: $log_file)"; }

exec 9>>"$lock_file"
flock 9  # one run at a time: creation, and the shared .deb cache
mkdir -p "$archives/partial"

create_base() {
  local mirror tmpbase=$base.tmp start=$SECONDS
  command -v debootstrap >/dev/null || apt-get install -y -qq --no-install-recommends debootstrap >>"$log_file" 2>&1 ||
    log_failure "apt-get install debootstrap (host)"
  grep -qF " $tmpbase" /proc/self/mountinfo && die "something is mounted below $tmpbase"
  rm -rf --one-file-system -- "$tmpbase" "$base"
  mirror=$(host_mirror)
  say "creating a Debian $suite chroot in $base (debootstrap from $mirror)"
  debootstrap --variant=minbase "$suite" "$tmpbase" "$mirror" >>"$log_file" 2>&1 || log_failure "debootstrap"
  printf '#!/bin/sh\nexit 101\n' >"$tmpbase/usr/sbin/policy-rc.d"  # no daemons in the chroot
  chmod 755 "$tmpbase/usr/sbin/policy-rc.d"
  echo "deb $mirror $suite-backports main" >"$tmpbase/etc/apt/sources.list.d/backports.list"
  cp -L /etc/resolv.conf "$tmpbase/etc/resolv.conf" 2>/dev/null || true
  apt-config dump 2>/dev/null | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy|ftp::Proxy) ' \
    >"$tmpbase/etc/apt/apt.conf.d/99circbuf-host" || true
  mount_at --bind /proc "$tmpbase/proc"
  mount_at --bind /dev "$tmpbase/dev"
  in_chroot "$tmpbase" sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${packages[*]} &&
    apt-get install -y -qq --no-install-recommends -t $suite-backports cmake && apt-get clean" >>"$log_file" 2>&1 ||
    log_failure "apt-get install in the chroot"
  unmount_all
  printf '%s\n' "${packages[*]} cmake" >"$tmpbase/.circbuf-ready"
  mv -T -- "$tmpbase" "$base"
  say "chroot ready in $((SECONDS - start)) s"
}
if [[ ! -f $marker || $(<"$marker") != "${packages[*]} cmake" ]]; then
  section "create the clean Debian 12 chroot (once)"
  : >"$log_file"
  create_base
fi

# ---- 3. install the package in a throw-away overlay, build the consumer -------------
section "install $(basename "$deb") in a fresh Debian 12 overlay, build examples/consumer against it"
start=$SECONDS
tmp=$(mktemp -d /var/tmp/circbuf-deb.XXXXXX)  # on the same file system as the cache, not a tmpfs
root=$tmp/root
mkdir -p "$tmp/upper" "$tmp/work" "$root"
if mount -t overlay overlay -o "lowerdir=$base,upperdir=$tmp/upper,workdir=$tmp/work" "$root" 2>/dev/null; then
  mounted+=("$root")
else
  say "no overlayfs: copying the chroot"
  cp -a "$base/." "$root/"
fi
mount_at --bind /proc "$root/proc"
mount_at --bind /dev "$root/dev"
mount_at --bind /dev/pts "$root/dev/pts"
mount_at --bind /dev/shm "$root/dev/shm"
mount_at --bind "$archives" "$root/var/cache/apt/archives"
mount_at --bind -o ro "$src" "$root$src"  # read-only: the consumer builds in the overlay's /tmp
cp -- "$deb" "$root/tmp/"

# shellcheck disable=SC2016  # expanded by the chroot's shell
in_chroot "$root" bash -euo pipefail -c '
  cd /tmp
  deb=$(basename "$1")
  echo "--- apt-get install ./$deb"
  if ! apt-get install -y -qq --no-install-recommends "./$deb" >/tmp/apt.log 2>&1; then
    apt-get update -qq >>/tmp/apt.log 2>&1   # the cached package lists may be stale
    apt-get install -y -qq --no-install-recommends "./$deb" >>/tmp/apt.log 2>&1 || { tail -n 30 /tmp/apt.log; exit 1; }
  fi
  dpkg-query -W circbuf libspdlog-dev
  circbuf --help >/dev/null
  echo "--- examples/consumer with clang-19, find_package(circbuf) from /usr"
  cmake -S "$2/examples/consumer" -B /tmp/consumer -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_COMPILER=clang++-19 -DCMAKE_CXX_COMPILER_CLANG_SCAN_DEPS=clang-scan-deps-19 \
    -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" >/dev/null
  cmake --build /tmp/consumer
  /tmp/consumer/circbuf_roundtrip
  echo "--- the C ABI: a C program against /usr/include/circbuf.h and libcircbuf.so.0 (ldconfig trigger)"
  printf "#include <circbuf.h>\n#include <stdio.h>\nint main(void) { puts(circbuf_version()); return 0; }\n" > /tmp/v.c
  clang-19 -std=c11 -Wall -Werror /tmp/v.c -lcircbuf -o /tmp/v
  [ "$(/tmp/v)" = 0.1.0 ] || { echo "the C program did not print 0.1.0"; exit 1; }
  if command -v python3 >/dev/null; then
    python3 -c "import circbuf; print(\"python: circbuf\", circbuf.__file__)"
  else
    echo "python3 is not in this chroot: the Python package is checked by the test suite only"
  fi
' _ "$deb" "$src" || die "the package does not install or the consumer fails against it"
unmount_all
[[ ! -e $base/usr/bin/circbuf && ! -e $base/usr/include/spdlog ]] || die "the cached chroot $base is no longer clean"
echo "package leg: $((SECONDS - start)) s"
