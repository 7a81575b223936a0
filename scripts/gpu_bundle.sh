#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh runs into one self-contained folder, for a GPU machine that has
# the NVIDIA driver, cuBLAS and NCCL but none of tpinfer's other dependencies (no Open MPI, HDF5,
# yaml-cpp, Boost ...; a bare CUDA container, say): the GPU binaries built here, every shared
# library they need except glibc, the C++ runtime and the CUDA libraries, a relocatable Open MPI
# (mpirun, orted, its plugins and PMIx's), and the bundled model converted for tp 1 and 2.
#
#   scripts/gpu_bundle.sh [--build DIR] [--out DIR] [--arch 90]
#
# Then, on the GPU machine, from a copy of the repository holding the folder:
#   scripts/gpu_check.sh --bundle DIR
# Default folder: build-gpu/bundle (ignored by git), and beside it bundle.tar.xz, the same folder
# in one compressed file (about a quarter of the size) for copying.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build-gpu
OUT=""
ARCH=90
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --arch) ARCH=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "gpu_bundle.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$BUILD/bundle}
TARGETS=(tpinfer test_cuda_ops test_cuda_engine test_nccl_comm tpinfer-cuda-bandwidth
         tpinfer-cuda-gemv-bench)

echo "gpu_bundle: building ${TARGETS[*]} for sm_$ARCH in $BUILD"
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTPINFER_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >"$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" -j "${JOBS:-$(nproc)}" --target "${TARGETS[@]}" >"$BUILD/build.log" 2>&1 ||
  { tail -n 40 "$BUILD/build.log"; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib" "$OUT/models"
for t in "${TARGETS[@]}"; do
  src=$(find "$BUILD" -type f -name "$t" -perm -u+x | head -n 1)
  [ -n "$src" ] || { echo "gpu_bundle: $t was not built" >&2; exit 1; }
  cp "$src" "$OUT/bin/"
  strip --strip-unneeded "$OUT/bin/$t"
done

# Open MPI as Debian installs it, under a prefix that OPAL_PREFIX points at on the GPU machine.
ompi=$OUT/ompi
multiarch=$(gcc -print-multiarch)
ompi_lib=/usr/lib/$multiarch/openmpi/lib
mkdir -p "$ompi/usr/bin" "$ompi/usr/lib/$multiarch/openmpi" "$ompi/usr/share"
cp -a "$ompi_lib" "$ompi/usr/lib/$multiarch/openmpi/"
rm -rf "$ompi/usr/lib/$multiarch/openmpi/lib/pkgconfig"
cp -a /usr/share/openmpi "$ompi/usr/share/"
for b in orterun orted ompi_info; do cp "/usr/bin/$b" "$ompi/usr/bin/"; done
ln -s orterun "$ompi/usr/bin/mpirun"
pmix=/usr/lib/$multiarch/pmix2
mkdir -p "$ompi/usr/lib/$multiarch/pmix2/lib"
cp -a "$pmix/lib/pmix" "$ompi/usr/lib/$multiarch/pmix2/lib/"
[ -d "$pmix/share" ] && cp -a "$pmix/share" "$ompi/usr/lib/$multiarch/pmix2/"

# Every library the binaries and plugins load, but for those the GPU machine must bring itself:
# glibc and the dynamic loader, the C++ runtime (a newer system one serves older binaries) and
# the CUDA driver, cuBLAS and NCCL (hundreds of MB; the CUDA runtime is small and is copied).
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libutil\.so|libstdc\+\+\.so|libgcc_s\.so|libcuda\.so|libcublas|libcublasLt|libnccl|libnvidia)'
objects=("$OUT"/bin/* "$ompi"/usr/bin/orterun "$ompi"/usr/bin/orted "$ompi"/usr/bin/ompi_info)
while IFS= read -r -d '' so; do objects+=("$so"); done < <(find "$ompi" -name '*.so*' -type f -print0)
for obj in "${objects[@]}"; do
  ldd "$obj" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  if [[ "$name" =~ $skip ]]; then continue; fi
  case "$path" in "$OUT"/*) continue ;; esac
  [ -e "$OUT/lib/$name" ] || cp -L "$path" "$OUT/lib/$name"
done

# The bundled model, converted as the tests convert it (f32, and int8 for the int8 engine test).
for tp in 1 2; do
  /usr/bin/python3 "$ROOT/scripts/convert_hf.py" --quiet --model "$ROOT/configs/models/stories260K" \
    --tp "$tp" --dtype f32 --out "$OUT/models/stories260K-tp$tp"
  /usr/bin/python3 "$ROOT/scripts/convert_hf.py" --quiet --model "$ROOT/configs/models/stories260K" \
    --tp "$tp" --dtype int8 --out "$OUT/models/stories260K-int8-tp$tp"
done

cat >"$OUT/env.sh" <<EOF
# Sourced by scripts/gpu_check.sh --bundle: the bundle's Open MPI and libraries first.
here=\$(cd "\$(dirname "\${BASH_SOURCE[0]}")" && pwd)
export OPAL_PREFIX=\$here/ompi/usr
export PMIX_INSTALL_PREFIX=\$here/ompi/usr/lib/$multiarch/pmix2
export PMIX_MCA_mca_base_component_path=\$here/ompi/usr/lib/$multiarch/pmix2/lib/pmix
export PATH=\$here/ompi/usr/bin:\$here/bin:\$PATH
export LD_LIBRARY_PATH=\$here/lib:\$here/ompi/usr/lib/$multiarch/openmpi/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export OMPI_MCA_mca_base_component_show_load_errors=0
export TPI_BUNDLE_MODELS=\$here/models
EOF
tar -C "$(dirname "$OUT")" -cJf "$OUT.tar.xz" "$(basename "$OUT")"
echo "gpu_bundle: $OUT holds $(du -sh "$OUT" | cut -f1) ($(ls "$OUT/lib" | wc -l) libraries);" \
  "$OUT.tar.xz $(du -sh "$OUT.tar.xz" | cut -f1)"
