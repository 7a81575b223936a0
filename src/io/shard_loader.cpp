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
    case DType::i8:
      return H5Elem::i8;
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
    case H5Elem::i8:
      return "int8";
    case H5Elem::other:
      return "other";
  }
  return "?";
}

void check_file_attrs(const Hdf5File& f, const ModelDir& md, int rank, int stage) {
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
  if (md.pp > 1) {
    const int64_t file_stage = f.attr_int("stage");
    TPI_CHECK(file_stage == stage, p << ": attribute stage is " << file_stage << ", expected "
                                     << stage << " (shard files renamed or swapped?)");
    const int64_t file_pp = f.attr_int("pp");
    TPI_CHECK(file_pp == md.pp,
              p << ": attribute pp is " << file_pp << ", manifest.json says pp=" << md.pp);
  }
  const std::string dtype = f.attr_string("dtype");
  TPI_CHECK(dtype == dtype_name(md.dtype), p << ": attribute dtype is '" << dtype
                                             << "', manifest.json says '" << dtype_name(md.dtype)
                                             << "'");
}

// The dtype a tensor is stored in: int8 for the linear weights of an int8 model, else the
// model's float dtype.
DType tensor_dtype(const TensorSpec& spec, const ModelDir& md) {
  return md.dtype == DType::i8 && !int8_quantized(spec) ? md.float_dtype : md.dtype;
}

// Scales of an int8 weight of local shape [rows, cols]: [rows, ceil(cols / group)].
int64_t int8_group_of(const ModelDir& md, int64_t cols) {
  return md.int8_group > 0 ? md.int8_group : cols;
}

void check_scales(const Hdf5File& f, const TensorSpec& spec, const ModelDir& md) {
  const std::string name = int8_scales_name(spec.name);
  const std::string where = f.path() + ": tensor " + name;
  const std::vector<int64_t> local = spec.local_shape(md.tp);
  const int64_t group = int8_group_of(md, local[1]);
  const std::vector<int64_t> want = {local[0], (local[1] + group - 1) / group};
  TPI_CHECK(f.has_dataset(name), where << ": missing (the int8 scales of " << spec.name
                                       << ", expected shape " << shape_str(want) << ")");
  const Hdf5Dataset ds = f.dataset(name);
  TPI_CHECK(ds.elem() == H5Elem::f32,
            where << ": expected float32 scales, found " << ds.elem_description());
  TPI_CHECK(ds.shape() == want, where << ": expected shape " << shape_str(want) << " (int8 group "
                                      << group << "), found " << shape_str(ds.shape()));
}

void check_tensor(const Hdf5File& f, const TensorSpec& spec, const ModelDir& md) {
  const std::string where = f.path() + ": tensor " + spec.name;
  TPI_CHECK(f.has_dataset(spec.name), where << ": missing (expected local shape "
                                            << shape_str(spec.local_shape(md.tp)) << ", "
                                            << spec.describe(md.tp) << ")");
  const Hdf5Dataset ds = f.dataset(spec.name);
  const DType dt = tensor_dtype(spec, md);
  const H5Elem want = stored_elem(dt);
  TPI_CHECK(ds.elem() == want, where << ": expected " << elem_name(want) << " data for dtype "
                                     << dtype_name(dt) << ", found " << ds.elem_description());
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

void load_shard(const ModelDir& md, int rank, const TensorSink& sink, bool verify_sha256,
                int stage) {
  load_shard(
      md, rank, sink,
      [&](const TensorSpec& spec, const std::vector<int64_t>&, const int8_t*, const float*,
          int64_t) {
        TPI_FAIL(md.shard_path(rank, stage)
                 << ": tensor " << spec.name
                 << " is int8, and this reader takes float tensors only");
      },
      verify_sha256, stage);
}

void load_shard(const ModelDir& md, int rank, const TensorSink& sink, const Int8Sink& int8_sink,
                bool verify_sha256, int stage) {
  TPI_CHECK(rank >= 0 && rank < md.tp,
            md.path << ": rank " << rank << " is out of range for tp=" << md.tp);
  TPI_CHECK(stage >= 0 && stage < md.pp,
            md.path << ": stage " << stage << " is out of range for pp=" << md.pp);
  const std::string path = md.shard_path(rank, stage);
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  TPI_CHECK(!ec, path << ": shard file not found (listed in " << md.path << "/manifest.json)");
  if (const ShardFile* file = md.shard_file(rank, stage)) {
    const int64_t want = file->bytes;
    TPI_CHECK(static_cast<int64_t>(size) == want,
              path << ": file is " << size << " bytes, manifest.json records " << want
                   << (static_cast<int64_t>(size) < want ? " (truncated? " : " (replaced? ")
                   << "re-run scripts/convert_hf.py)");
    // The right size with other bytes (a bad copy, a flipped bit) would load and generate
    // different text: the whole file is hashed before any of it is used.
    const std::string& expected = file->sha256;
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
  check_file_attrs(f, md, rank, stage);

  // This stage's tensors of the table (all of them with one stage).
  std::vector<TensorSpec> table;
  const StageRange range = md.stage_range(stage);
  for (TensorSpec& spec : sharding_table(md.config)) {
    if (range.holds(spec.name)) table.push_back(std::move(spec));
  }
  std::set<std::string> expected;
  for (const TensorSpec& spec : table) {
    check_tensor(f, spec, md);
    expected.insert(spec.name);
    if (tensor_dtype(spec, md) == DType::i8) {
      check_scales(f, spec, md);
      expected.insert(int8_scales_name(spec.name));
    }
  }
  for (const std::string& name : f.dataset_names()) {
    TPI_CHECK(expected.count(name) == 1,
              path << ": tensor " << name << ": not in the sharding table of this "
                   << arch_name(md.config.arch) << " config (converted from a different model?)");
  }

  // One buffer, grown to the largest tensor, reused for every tensor.
  std::vector<unsigned char> buffer;
  std::vector<float> scales;
  for (const TensorSpec& spec : table) {
    const std::vector<int64_t> local = spec.local_shape(md.tp);
    size_t n = 1;
    for (int64_t s : local) n *= static_cast<size_t>(s);
    const DType dt = tensor_dtype(spec, md);
    const size_t bytes = n * dtype_size(dt);
    buffer.resize(bytes);
    f.dataset(spec.name).read(buffer.data(), bytes, stored_elem(dt));
    if (dt != DType::i8) {
      sink(spec, local, buffer.data(), dt);
      continue;
    }
    const int64_t group = int8_group_of(md, local[1]);
    scales.resize(static_cast<size_t>(local[0] * ((local[1] + group - 1) / group)));
    f.dataset(int8_scales_name(spec.name))
        .read(scales.data(), sizeof(float) * scales.size(), H5Elem::f32);
    int8_sink(spec, local, reinterpret_cast<const int8_t*>(buffer.data()), scales.data(), group);
  }
}

}  // namespace tpinfer
