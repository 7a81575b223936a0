// RAII wrappers over the serial HDF5 C API, read side only (scripts/convert_hf.py writes the
// shards). hdf5.h stays inside hdf5_file.cpp: ids cross this header as H5Id (== hid_t, checked
// there). Every error names the file, and the dataset or attribute.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tpinfer {

using H5Id = int64_t;

// Owns one HDF5 id and closes it with H5Oclose / H5Fclose (by kind) on destruction.
class H5Handle {
 public:
  enum class Kind { file, object };
  H5Handle() = default;
  H5Handle(H5Id id, Kind kind) : id_(id), kind_(kind) {}
  H5Handle(H5Handle&& o) noexcept : id_(o.id_), kind_(o.kind_) { o.id_ = -1; }
  H5Handle& operator=(H5Handle&& o) noexcept;
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  ~H5Handle() { reset(); }
  H5Id get() const { return id_; }
  void reset();

 private:
  H5Id id_ = -1;
  Kind kind_ = Kind::object;
};

// Element type of a dataset or attribute, as far as tpinfer cares.
enum class H5Elem { f32, u16, i64, i8, other };

class Hdf5Dataset {
 public:
  const std::string& name() const { return name_; }
  std::vector<int64_t> shape() const;
  H5Elem elem() const;
  std::string elem_description() const;  // "float32", "uint16", "int32", "float64", ...
  bool has_attr(const std::string& attr) const;
  // An integer attribute, scalar or 1-D (any integer width); throws when absent or not integer.
  std::vector<int64_t> attr_ints(const std::string& attr) const;
  int64_t attr_int(const std::string& attr) const;
  // Reads the whole dataset as `as` (f32 -> float, u16 -> uint16, i8 -> int8) into out (bytes
  // long).
  void read(void* out, size_t bytes, H5Elem as) const;

 private:
  friend class Hdf5File;
  Hdf5Dataset(H5Handle h, std::string file, std::string name)
      : h_(std::move(h)), file_(std::move(file)), name_(std::move(name)) {}
  H5Handle h_;
  std::string file_;
  std::string name_;
};

class Hdf5File {
 public:
  static Hdf5File open_read(const std::string& path);
  const std::string& path() const { return path_; }
  // Names of the datasets directly under the root group, in name order.
  std::vector<std::string> dataset_names() const;
  bool has_dataset(const std::string& name) const;
  Hdf5Dataset dataset(const std::string& name) const;
  // Root-group attributes.
  bool has_attr(const std::string& attr) const;
  int64_t attr_int(const std::string& attr) const;
  std::string attr_string(const std::string& attr) const;

 private:
  Hdf5File(H5Handle h, std::string path) : h_(std::move(h)), path_(std::move(path)) {}
  H5Handle h_;
  std::string path_;
};

}  // namespace tpinfer
