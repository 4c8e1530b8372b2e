#!/usr/bin/env bash
# Installs what circbuf needs to build and test on Debian 12 (bookworm), as root.
# Idempotent: when every tool and library is already there it installs nothing
# and returns in well under a second, so the README commands stay fast on a
# second run.
#
#   clang-19 + clang-tools-19 (clang-scan-deps-19) + libclang-rt-19-dev (sanitizers)
#   libfuzzer-19-dev: the fuzz targets (clang-fuzz preset, .ci/fuzz.sh)
#   cmake >= 3.28 from bookworm-backports (3.25 in main cannot scan C++ modules)
#   ninja-build >= 1.11, libgtest-dev, libbenchmark-dev, libspdlog-dev
#   libcli11-dev (the circbuf tool)
#   libboost-dev, iceoryx (libiceoryx-*-dev, iox-roudi): peers in the benchmarks
#   python3-matplotlib: the benchmark report's plots
#   dpkg-dev (dpkg-shlibdeps for the .deb's dependencies), debootstrap (CI chroots)
#   clang-format-19, clang-tidy-19: .ci/format.sh and .ci/tidy.sh
#   python3, python3-pytest: the Python package (python/) and its tests (Debian's
#     /usr/bin/python3; the C tests build with clang-19, which compiles C as well);
#     python3-dev: the package's _circbuf_speedups extension (docs/python.md)
#   libnats-dev, nats-server: `circbuf bridge` (NATS JetStream) and its tests, which
#     start their own nats-server processes (the package's systemd unit is not used);
#     python3-cryptography: Ed25519 for the nkeys and JWTs of the --creds test
#     (tests/bridge/make_creds.py)
set -euo pipefail

packages=(clang-19 clang-tools-19 libclang-rt-19-dev libfuzzer-19-dev ninja-build
          libgtest-dev libbenchmark-dev libspdlog-dev libcli11-dev
          libboost-dev iceoryx libiceoryx-posh-dev libiceoryx-hoofs-dev python3-matplotlib
          dpkg-dev debootstrap
          clang-format-19 clang-tidy-19
          python3 python3-pytest python3-dev
          libnats-dev nats-server python3-cryptography)

cmake_ok() {
  command -v cmake >/dev/null 2>&1 || return 1
  local v; v=$(cmake --version | awk 'NR==1 {print $3}')
  # sort -V puts the smaller version first; OK when 3.28 sorts first.
  [[ $(printf '%s\n3.28\n' "$v" | sort -V | head -n1) == 3.28 ]]
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]] && cmake_ok; then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "setup-debian12.sh: missing ${missing[*]:-} (and/or cmake >= 3.28); run this script as root to install them" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! cmake_ok; then
  # bookworm-backports from the mirror this machine already uses.
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [[ -z $mirror ]]; then
    mirror=$(awk '/^deb / && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  mirror=${mirror:-http://deb.debian.org/debian}
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb $mirror bookworm-backports main" > /etc/apt/sources.list.d/backports.list
  fi
fi
echo "setup-debian12.sh: installing ${missing[*]:-} $(cmake_ok || echo 'cmake (bookworm-backports)')" >&2
apt-get update -qq
if [[ ${#missing[@]} -gt 0 ]]; then
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! cmake_ok; then
  apt-get install -y -qq --no-install-recommends -t bookworm-backports cmake >/dev/null
fi
cmake_ok || { echo "setup-debian12.sh: cmake >= 3.28 still missing after install" >&2; exit 1; }
