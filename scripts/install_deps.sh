#!/usr/bin/env bash
# Installs what tpinfer needs to build, run and test, from Debian 12 packages only. Idempotent:
# it asks apt for nothing when everything is already installed.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ccache
  libopenmpi-dev openmpi-bin                # MPI: launch, control plane, CPU collectives
  libhdf5-dev                               # serial HDF5: each rank reads its own shard
  libboost-program-options-dev              # command-line flags
  libyaml-cpp-dev nlohmann-json3-dev        # config and manifest
  libssl-dev                                # sha256 of the shards (libcrypto)
  libpcre2-dev libutf8proc-dev              # tokenizer: Unicode regex and NFC
  libcpp-httplib-dev                        # the OpenAI-compatible server (cpp-httplib 0.11)
  catch2                                    # tests (Catch2 v2)
  clang-format                              # scripts/check_format.sh (clang-format 14)
  python3 python3-numpy python3-h5py        # scripts/convert_hf.py (run with /usr/bin/python3)
)
if [[ "${TPINFER_WITH_SLURM:-0}" == 1 ]]; then
  packages+=(slurm-wlm munge)               # tests/slurm: a real one-node SLURM cluster
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
