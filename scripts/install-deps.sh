#!/usr/bin/env bash
# Installs every Debian package longquant needs to build, test and run.
# Idempotent: packages already present are skipped by apt-get.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  libdnnl-dev            # oneDNN: bf16/AMX and AVX-512 GEMM
  libhwy-dev             # Highway: portable SIMD with runtime dispatch
  libpcre2-dev           # tokenizer pre-tokenizer regex with Unicode classes
  nlohmann-json3-dev     # JSON
  libsqlite3-dev         # results database
  libcli11-dev           # command line
  libfmt-dev             # text formatting
  libcpp-httplib-dev     # HTTP (serve / endpoint backend)
  libutf8proc-dev        # Unicode normalisation (NFC / NFKC)
  libgtest-dev libgmock-dev libbenchmark-dev   # tests and benchmarks
  chromium               # the report test renders report.html headless
)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
