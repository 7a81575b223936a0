// Shard loader: validate the whole file first (metadata only), then stream tensors to the sink.
#include "io/shard_loader.h"

#include <filesystem>
#include <set>

#include "core/error.h"
#include "io/hdf5_file.h"
#include "io/sha256.h"

namespace tpinfer {

namespace {

H5Elem stored_elem(DType t) {
  switch (t) {
    case DType::f32:
      return H5Elem::f32;
    case DType::f16:
      return H5Elem::u16;
    case DType::bf16:
      return H5Elem::u16;
    case DType::i32:
      return H5Elem::other;
  }
  return H5Elem::other;
}

const char* elem_name(H5Elem e) {
  switch (e) {
    case H5Elem::f32:
      return "float32";
    case H5Elem::u16:
      return "uint16";
    case H5Elem::i64:
      return "int64";
    case H5Elem::other:
      return "other";
  }
  return "?";
}

void check_file_attrs(const Hdf5File& f, const ModelDir& md, int rank) {
  const std::string& p = f.path();
  const int64_t version = f.attr_int("format_version");
  TPI_CHECK(version == md.format_version, p << ": attribute format_version is " << version
                                            << ", manifest.json says " << md.format_version);
  const int64_t file_rank = f.attr_int("rank");
  TPI_CHECK(file_rank == rank, p << ": attribute rank is " << file_rank << ", expected " << rank
                                 << " (shard files renamed or swapped?)");
  const int64_t file_tp = f.attr_int("tp");
  TPI_CHECK(file_tp == md.tp,
            p << ": attribute tp is " << file_tp << ", manifest.json says tp=" << md.tp);
  const std::string dtype = f.attr_string("dtype");
  TPI_CHECK(dtype == dtype_name(md.dtype), p << ": attribute dtype is '" << dtype
                                             << "', manifest.json says '" << dtype_name(md.dtype)
                                             << "'");
}

void check_tensor(const Hdf5File& f, const TensorSpec& spec, const ModelDir& md) {
  const std::string where = f.path() + ": tensor " + spec.name;
  TPI_CHECK(f.has_dataset(spec.name), where << ": missing (expected local shape "
                                            << shape_str(spec.local_shape(md.tp)) << ", "
                                            << spec.describe(md.tp) << ")");
  const Hdf5Dataset ds = f.dataset(spec.name);
  const H5Elem want = stored_elem(md.dtype);
  TPI_CHECK(ds.elem() == want, where << ": expected " << elem_name(want) << " data for dtype "
                                     << dtype_name(md.dtype) << ", found "
                                     << ds.elem_description());
  const std::vector<int64_t> local = spec.local_shape(md.tp);
  const std::vector<int64_t> found = ds.shape();
  TPI_CHECK(found == local, where << ": expected local shape " << shape_str(local) << " ("
                                  << spec.describe(md.tp) << "), found " << shape_str(found));
  const std::vector<int64_t> global = ds.attr_ints("global_shape");
  TPI_CHECK(global == spec.global_shape,
            where << ": attribute global_shape is " << shape_str(global)
                  << ", the sharding table expects " << shape_str(spec.global_shape)
                  << " (converted from a different config?)");
  const int64_t split = ds.attr_int("split_dim");
  TPI_CHECK(split == static_cast<int64_t>(spec.split),
            where << ": attribute split_dim is " << split << ", the sharding table expects "
                  << static_cast<int>(spec.split)
                  << " (converter and engine disagree on the sharding)");
}

}  // namespace

void load_shard(const ModelDir& md, int rank, const TensorSink& sink, bool verify_sha256) {
  TPI_CHECK(rank >= 0 && rank < md.tp,
            md.path << ": rank " << rank << " is out of range for tp=" << md.tp);
  const std::string path = md.shard_path(rank);
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  TPI_CHECK(!ec, path << ": shard file not found (listed in " << md.path << "/manifest.json)");
  if (static_cast<size_t>(rank) < md.files.size()) {
    const int64_t want = md.files[static_cast<size_t>(rank)].bytes;
    TPI_CHECK(static_cast<int64_t>(size) == want,
              path << ": file is " << size << " bytes, manifest.json records " << want
                   << (static_cast<int64_t>(size) < want ? " (truncated? " : " (replaced? ")
                   << "re-run scripts/convert_hf.py)");
    // The right size with other bytes (a bad copy, a flipped bit) would load and generate
    // different text: the whole file is hashed before any of it is used.
    const std::string& expected = md.files[static_cast<size_t>(rank)].sha256;
    if (verify_sha256) {
      const std::string found = sha256_file(path);
      TPI_CHECK(found == expected,
                path << ": sha256 is " << found << ", manifest.json records " << expected
                     << " (the file changed after conversion: a bad copy or a damaged disk?); "
                     << "re-run scripts/convert_hf.py, or set verify_checksums: false to skip "
                     << "this check");
    }
  }

  const Hdf5File f = Hdf5File::open_read(path);
  check_file_attrs(f, md, rank);

  const std::vector<TensorSpec> table = sharding_table(md.config);
  std::set<std::string> expected;
  for (const TensorSpec& spec : table) {
    check_tensor(f, spec, md);
    expected.insert(spec.name);
  }
  for (const std::string& name : f.dataset_names()) {
    TPI_CHECK(expected.count(name) == 1,
              path << ": tensor " << name << ": not in the sharding table of this "
                   << arch_name(md.config.arch) << " config (converted from a different model?)");
  }

  // One buffer, grown to the largest tensor, reused for every tensor.
  std::vector<unsigned char> buffer;
  const H5Elem elem = stored_elem(md.dtype);
  for (const TensorSpec& spec : table) {
    const std::vector<int64_t> local = spec.local_shape(md.tp);
    size_t n = 1;
    for (int64_t s : local) n *= static_cast<size_t>(s);
    const size_t bytes = n * dtype_size(md.dtype);
    buffer.resize(bytes);
    f.dataset(spec.name).read(buffer.data(), bytes, elem);
    sink(spec, local, buffer.data(), md.dtype);
  }
}

}  // namespace tpinfer
