#!/usr/bin/env bash
# Runs a command inside a Debian 13 (trixie) chroot that has g++-14, so that a
# Debian 12 (bookworm) machine, as root, can build and test circbuf with the
# gcc presets:
#
#   toolchains/gcc-chroot.sh <command> [args...]
#   toolchains/gcc-chroot.sh cmake --workflow --preset gcc-debug
#   toolchains/gcc-chroot.sh --remove     # unmount anything left, delete the chroot
#   toolchains/gcc-chroot.sh --help
#
# The chroot lives in ${CIRCBUF_CHROOT:-/var/cache/circbuf/trixie}, outside the
# source tree. The first run creates it (debootstrap --variant=minbase from the
# host's Debian mirror, then apt installs the packages listed below; about a
# minute) and leaves a marker file .circbuf-ready in it; later runs reuse it and
# start in well under a second. A lock file beside it (<dir>.lock) serialises
# creation and --remove; the log of the last creation/install is <dir>.log.
#
# The command runs in the caller's current directory, which must be inside the
# source tree; the source tree is bind-mounted into the chroot at the same
# absolute path, together with /proc, /dev, /dev/pts and the host's /dev/shm
# (the tests share POSIX shared memory and named semaphores across processes).
# The environment is reset to PATH, HOME=/root, TERM=dumb and CI (plus
# CMAKE_BUILD_PARALLEL_LEVEL, CTEST_PARALLEL_LEVEL, CTEST_OUTPUT_ON_FAILURE when
# they are set). The mounts are made in a private mount namespace (unshare)
# where available, so they never show up on the host and die with the command
# even if this script is killed; they are also unmounted by an EXIT trap.
# The command's exit status is this script's exit status.
#
# To remove the chroot: toolchains/gcc-chroot.sh --remove
# (never plain rm -rf it while something is mounted inside it: the source tree
# is bind-mounted there).
#
# On a machine with a native g++ >= 14 (Debian 13, Ubuntu 24.04+, ...) you do
# not need this script: the gcc presets work directly.
set -euo pipefail

# Packages installed in the chroot. Add to this list (e.g. libcli11-dev
# libboost-dev); the next run installs whatever is missing. libnats-dev and
# nats-server: `circbuf bridge` and its tests (Debian 13 has 3.10 and 2.10);
# python3-cryptography: the bridge's --creds test (tests/bridge/make_creds.py).
packages=(g++-14 cmake ninja-build libgtest-dev libbenchmark-dev libspdlog-dev libcli11-dev libboost-dev
          libnats-dev nats-server python3-cryptography)

suite=trixie
chroot_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
passthrough_vars=(CMAKE_BUILD_PARALLEL_LEVEL CTEST_PARALLEL_LEVEL CTEST_OUTPUT_ON_FAILURE)
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "gcc-chroot: $*" >&2; }
die() { echo "gcc-chroot: error: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$self"; }

self=$(readlink -f "${BASH_SOURCE[0]}")
script_dir=$(dirname "$self")
src_root=$(git -C "$script_dir" rev-parse --show-toplevel 2>/dev/null || true)
[[ -n $src_root ]] || src_root=$(dirname "$script_dir")
src_root=$(readlink -f "$src_root")

chroot_dir=$(readlink -m "${CIRCBUF_CHROOT:-/var/cache/circbuf/trixie}")
tmp_dir=$chroot_dir.tmp
lock_file=$chroot_dir.lock
log_file=$chroot_dir.log
marker=$chroot_dir/.circbuf-ready

case ${1:-} in
  -h|--help) usage; exit 0 ;;
  '') usage >&2; exit 2 ;;
esac
remove=false
if [[ $1 == --remove ]]; then
  [[ $# -eq 1 ]] || die "--remove takes no arguments"
  remove=true
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (it uses debootstrap, mount and chroot)"
[[ $chroot_dir == /?*/?* ]] || die "refusing chroot directory '$chroot_dir' (CIRCBUF_CHROOT): too short"
if [[ $chroot_dir == "$src_root" || $chroot_dir == "$src_root"/* || $src_root == "$chroot_dir"/* ]]; then
  die "the chroot ($chroot_dir) must be outside the source tree ($src_root)"
fi

# --- mounts -----------------------------------------------------------------

# Mount points at or below $1 in this mount namespace, most recent first.
mounts_under() {
  local prefix=$1 mp
  while read -r _ _ _ _ mp _; do
    printf -v mp '%b' "$mp"   # mountinfo escapes blanks and backslashes as \ooo
    if [[ $mp == "$prefix" || $mp == "$prefix"/* ]]; then printf '%s\n' "$mp"; fi
  done < <(tac /proc/self/mountinfo)
}

# Unmounts everything left below $1 (a killed run, a killed debootstrap).
release_mounts_under() {
  local mp left
  while IFS= read -r mp; do
    say "unmounting leftover $mp"
    umount "$mp" 2>/dev/null || umount -l "$mp" || true
  done < <(mounts_under "$1")
  left=$(mounts_under "$1")
  [[ -z $left ]] || die "still mounted below $1: $left"
}

# rm -rf that first makes sure nothing is mounted below the directory: a bind
# mount of the source tree is on the same file system, so --one-file-system
# alone would not stop rm from walking into it.
safe_remove() {
  release_mounts_under "$1"
  rm -rf --one-file-system -- "$1"
}

mounted=()
bind_mount() {  # source target
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mounted+=("$2")
}
# shellcheck disable=SC2317  # called from the EXIT trap
unmount_all() {
  local i
  for (( i = ${#mounted[@]} - 1; i >= 0; i-- )); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true
  done
  mounted=()
}
trap unmount_all EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# --- lock, --remove, private mount namespace ----------------------------------

# The lock (fd 9) is held shared while the chroot is used and exclusive while
# it is created, changed or removed. Runs in private mount namespaces can share
# the chroot; without unshare every run takes it exclusively, since then the
# mounts of concurrent runs would be on the same mount points.
take_lock() {  # -s | -x
  if ! flock -n "$1" 9; then
    say "waiting for another gcc-chroot.sh run ($lock_file)"
    flock "$1" 9
  fi
  lock_mode=$1
}

ready() { [[ -f $marker && $(<"$marker") == "${packages[*]}" ]]; }

cwd=$(pwd -P)
if ! $remove && [[ $cwd != "$src_root" && $cwd != "$src_root"/* ]]; then
  die "run it from inside the source tree ($src_root), not $cwd"
fi

if [[ ${_CIRCBUF_GCC_CHROOT_NS:-} == -[sx] && /proc/self/fd/9 -ef $lock_file ]]; then
  in_ns=true    # re-executed below; fd 9 still holds the lock
  lock_mode=$_CIRCBUF_GCC_CHROOT_NS
else
  in_ns=false
  mkdir -p "$(dirname "$chroot_dir")"
  exec 9>>"$lock_file"

  if $remove; then
    take_lock -x
    for d in "$tmp_dir" "$chroot_dir"; do
      if [[ -e $d ]]; then
        say "removing $d"
        safe_remove "$d"
      fi
    done
    rm -f -- "$log_file"
    exit 0
  fi

  if unshare --mount --propagation private true 2>/dev/null; then
    take_lock -s
    ready || take_lock -x
    # Holding the lock at all means no run without a namespace is active, so
    # any mount below the chroot on the host is left over from a killed run.
    release_mounts_under "$chroot_dir"
    export _CIRCBUF_GCC_CHROOT_NS=$lock_mode
    exec unshare --mount --propagation private -- bash "$self" "$@"
  fi
  take_lock -x
  release_mounts_under "$chroot_dir"
fi
unset _CIRCBUF_GCC_CHROOT_NS

# --- creation and package installation --------------------------------------

host_mirror() {
  local m
  m=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [[ -z $m ]]; then
    m=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|ftp|file):/ && $i !~ /security/) { print $i; exit } }' \
          /etc/apt/sources.list 2>/dev/null || true)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

log_failure() {
  tail -n 25 "$log_file" >&2 || true
  die "$1 failed (full log: $log_file)"
}

create_chroot() {
  local mirror start
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap on the host"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends debootstrap >>"$log_file" 2>&1; then
      apt-get update -qq >>"$log_file" 2>&1 || log_failure "apt-get update (host)"
      apt-get install -y -qq --no-install-recommends debootstrap >>"$log_file" 2>&1 ||
        log_failure "apt-get install debootstrap (host)"
    fi
  fi
  if [[ -e $tmp_dir ]]; then
    say "removing incomplete $tmp_dir"
    safe_remove "$tmp_dir"
  fi
  mirror=$(host_mirror)
  say "creating Debian $suite chroot in $chroot_dir (debootstrap from $mirror)"
  start=$SECONDS
  debootstrap --variant=minbase "$suite" "$tmp_dir" "$mirror" >>"$log_file" 2>&1 ||
    log_failure "debootstrap"
  release_mounts_under "$tmp_dir"
  # No daemons are ever started by package scripts in the chroot.
  printf '#!/bin/sh\nexit 101\n' >"$tmp_dir/usr/sbin/policy-rc.d"
  chmod 755 "$tmp_dir/usr/sbin/policy-rc.d"
  mv -T -- "$tmp_dir" "$chroot_dir"
  say "debootstrap done in $((SECONDS - start)) s"
}

missing_packages() {
  local p status
  for p in "${packages[@]}"; do
    # shellcheck disable=SC2016  # ${Status} is dpkg-query's, not ours
    status=$(chroot "$chroot_dir" dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == 'install ok installed' ]] || echo "$p"
  done
}

install_packages() {
  local missing start v env_apt=()
  mapfile -t missing < <(missing_packages)
  if [[ ${#missing[@]} -gt 0 ]]; then
    say "installing ${missing[*]} in the chroot"
    start=$SECONDS
    if cp -L /etc/resolv.conf "$chroot_dir/etc/resolv.conf.circbuf" 2>/dev/null; then
      mv -f -- "$chroot_dir/etc/resolv.conf.circbuf" "$chroot_dir/etc/resolv.conf"
    fi
    # The host's apt proxy and Valid-Until settings apply to the same mirror.
    apt-config dump 2>/dev/null |
      grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy|ftp::Proxy) ' \
      >"$chroot_dir/etc/apt/apt.conf.d/99circbuf-host" || true
    for v in http_proxy https_proxy no_proxy; do
      if [[ -n ${!v:-} ]]; then env_apt+=("$v=${!v}"); fi
    done
    chroot "$chroot_dir" /usr/bin/env -i PATH="$chroot_path" HOME=/root \
      DEBIAN_FRONTEND=noninteractive "${env_apt[@]}" \
      sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" && apt-get clean' \
      _ "${missing[@]}" >>"$log_file" 2>&1 9>&- || log_failure "apt-get install in the chroot"
    mapfile -t missing < <(missing_packages)
    [[ ${#missing[@]} -eq 0 ]] || die "still missing in the chroot after install: ${missing[*]}"
    say "packages installed in $((SECONDS - start)) s"
  fi
  printf '%s\n' "${packages[*]}" >"$marker.tmp"
  mv -f -- "$marker.tmp" "$marker"
}

if ! ready && [[ $lock_mode == -s ]]; then
  take_lock -x   # the package list changed since this run looked
fi
if ! ready; then
  : >"$log_file"
  [[ -d $chroot_dir ]] || create_chroot
fi

bind_mount /proc "$chroot_dir/proc"
bind_mount /dev "$chroot_dir/dev"
bind_mount /dev/pts "$chroot_dir/dev/pts"
bind_mount /dev/shm "$chroot_dir/dev/shm"

ready || install_packages

bind_mount "$src_root" "$chroot_dir$src_root"

if $in_ns && [[ $lock_mode == -x ]]; then
  # Our mounts are private to this namespace: from here on, concurrent runs
  # can share the chroot.
  take_lock -s
  ready || die "the chroot was removed while starting"
fi

run_env=(PATH="$chroot_path" HOME=/root TERM=dumb CI="${CI:-}")
for v in "${passthrough_vars[@]}"; do
  if [[ -n ${!v:-} ]]; then run_env+=("$v=${!v}"); fi
done

rc=0
# shellcheck disable=SC2016  # $1 and $@ belong to the inner bash
chroot "$chroot_dir" /usr/bin/env -i "${run_env[@]}" \
  bash -c 'cd "$1" && shift && exec "$@"' _ "$cwd" "$@" 9>&- || rc=$?
exit "$rc"
