// HDF5 read wrappers (see hdf5_file.h). HDF5's own error-stack printing is switched off: every
// failure becomes a tpinfer::Error that names the file and what was being read.
#include "io/hdf5_file.h"

#include <hdf5.h>

#include <type_traits>

#include "core/error.h"

namespace tpinfer {

static_assert(std::is_same_v<hid_t, H5Id>, "H5Id must be hid_t (HDF5 >= 1.10)");

namespace {

void silence_hdf5_errors() {
  static const bool once = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)once;
}

// Ids of attributes, dataspaces and datatypes close through H5Idec_ref; this small guard keeps
// the .cpp free of manual close calls on every error path.
struct Id {
  hid_t id;
  explicit Id(hid_t i) : id(i) {}
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  ~Id() {
    if (id >= 0) H5Idec_ref(id);
  }
  operator hid_t() const { return id; }
  bool ok() const { return id >= 0; }
};

std::string describe_type(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  switch (cls) {
    case H5T_FLOAT:
      return "float" + std::to_string(size * 8);
    case H5T_INTEGER:
      return std::string(H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") +
             std::to_string(size * 8);
    case H5T_STRING:
      return "string";
    default:
      return "HDF5 type class " + std::to_string(static_cast<int>(cls));
  }
}

H5Elem classify(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_FLOAT && size == 4) return H5Elem::f32;
  if (cls == H5T_INTEGER && size == 2 && H5Tget_sign(type) == H5T_SGN_NONE) return H5Elem::u16;
  if (cls == H5T_INTEGER && size == 8 && H5Tget_sign(type) == H5T_SGN_2) return H5Elem::i64;
  if (cls == H5T_INTEGER && size == 1 && H5Tget_sign(type) == H5T_SGN_2) return H5Elem::i8;
  return H5Elem::other;
}

Id open_attr(hid_t obj, const std::string& attr, const std::string& where) {
  TPI_CHECK(H5Aexists(obj, attr.c_str()) > 0, where << ": missing attribute '" << attr << "'");
  const hid_t a = H5Aopen(obj, attr.c_str(), H5P_DEFAULT);
  TPI_CHECK(a >= 0, where << ": cannot open attribute '" << attr << "'");
  return Id(a);
}

std::vector<int64_t> read_int_attr(hid_t obj, const std::string& attr, const std::string& where) {
  Id a = open_attr(obj, attr, where);
  Id type(H5Aget_type(a));
  TPI_CHECK(type.ok() && H5Tget_class(type) == H5T_INTEGER,
            where << ": attribute '" << attr << "' must be an integer, found "
                  << (type.ok() ? describe_type(type) : std::string("unreadable type")));
  Id space(H5Aget_space(a));
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  TPI_CHECK(n >= 0, where << ": attribute '" << attr << "': unreadable dataspace");
  std::vector<int64_t> v(static_cast<size_t>(n));
  if (n > 0) {
    TPI_CHECK(H5Aread(a, H5T_NATIVE_INT64, v.data()) >= 0,
              where << ": cannot read attribute '" << attr << "'");
  }
  return v;
}

int64_t read_scalar_int_attr(hid_t obj, const std::string& attr, const std::string& where) {
  const std::vector<int64_t> v = read_int_attr(obj, attr, where);
  TPI_CHECK(v.size() == 1,
            where << ": attribute '" << attr << "' must hold one integer, found " << v.size());
  return v[0];
}

std::string read_string_attr(hid_t obj, const std::string& attr, const std::string& where) {
  Id a = open_attr(obj, attr, where);
  Id type(H5Aget_type(a));
  TPI_CHECK(type.ok() && H5Tget_class(type) == H5T_STRING,
            where << ": attribute '" << attr << "' must be a string, found "
                  << (type.ok() ? describe_type(type) : std::string("unreadable type")));
  Id space(H5Aget_space(a));
  TPI_CHECK(H5Sget_simple_extent_npoints(space) == 1,
            where << ": attribute '" << attr << "' must hold one string");
  std::string s;
  if (H5Tis_variable_str(type) > 0) {
    Id mem(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem, H5T_VARIABLE);
    H5Tset_cset(mem, H5Tget_cset(type));
    char* p = nullptr;
    TPI_CHECK(H5Aread(a, mem, &p) >= 0, where << ": cannot read attribute '" << attr << "'");
    if (p != nullptr) {
      s = p;
      H5free_memory(p);
    }
  } else {
    const size_t size = H5Tget_size(type);
    std::string buf(size, '\0');
    TPI_CHECK(H5Aread(a, type, buf.data()) >= 0,
              where << ": cannot read attribute '" << attr << "'");
    s = buf.substr(0, buf.find('\0'));
  }
  return s;
}

}  // namespace

H5Handle& H5Handle::operator=(H5Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    kind_ = o.kind_;
    o.id_ = -1;
  }
  return *this;
}

void H5Handle::reset() {
  if (id_ >= 0) {
    switch (kind_) {
      case Kind::file:
        H5Fclose(id_);
        break;
      case Kind::object:
        H5Oclose(id_);
        break;
    }
  }
  id_ = -1;
}

// --- Hdf5File ---------------------------------------------------------------------------------

Hdf5File Hdf5File::open_read(const std::string& path) {
  silence_hdf5_errors();
  const htri_t is_h5 = H5Fis_hdf5(path.c_str());
  TPI_CHECK(is_h5 > 0, path << ": not a readable HDF5 file"
                            << (is_h5 == 0 ? " (bad signature)" : " (missing or unreadable)"));
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  TPI_CHECK(f >= 0, path << ": HDF5 cannot open the file (truncated or corrupt?)");
  return Hdf5File(H5Handle(f, H5Handle::Kind::file), path);
}

std::vector<std::string> Hdf5File::dataset_names() const {
  H5G_info_t info;
  TPI_CHECK(H5Gget_info(h_.get(), &info) >= 0, path_ << ": cannot list the root group");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len =
        H5Lget_name_by_idx(h_.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    TPI_CHECK(len >= 0, path_ << ": cannot read the name of root link " << i);
    std::string name(static_cast<size_t>(len) + 1, '\0');
    H5Lget_name_by_idx(h_.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(),
                       H5P_DEFAULT);
    name.resize(static_cast<size_t>(len));
    if (has_dataset(name)) names.push_back(name);
  }
  return names;
}

bool Hdf5File::has_dataset(const std::string& name) const {
  if (name.empty() || name.find('/') != std::string::npos) return false;
  if (H5Lexists(h_.get(), name.c_str(), H5P_DEFAULT) <= 0) return false;
  const hid_t o = H5Oopen(h_.get(), name.c_str(), H5P_DEFAULT);
  if (o < 0) return false;
  const bool is_dataset = H5Iget_type(o) == H5I_DATASET;
  H5Oclose(o);
  return is_dataset;
}

Hdf5Dataset Hdf5File::dataset(const std::string& name) const {
  TPI_CHECK(has_dataset(name), path_ << ": tensor " << name << ": dataset not found");
  const hid_t d = H5Dopen2(h_.get(), name.c_str(), H5P_DEFAULT);
  TPI_CHECK(d >= 0, path_ << ": tensor " << name << ": cannot open dataset");
  return Hdf5Dataset(H5Handle(d, H5Handle::Kind::object), path_, name);
}

bool Hdf5File::has_attr(const std::string& attr) const {
  return H5Aexists(h_.get(), attr.c_str()) > 0;
}

int64_t Hdf5File::attr_int(const std::string& attr) const {
  return read_scalar_int_attr(h_.get(), attr, path_);
}

std::string Hdf5File::attr_string(const std::string& attr) const {
  return read_string_attr(h_.get(), attr, path_);
}

// --- Hdf5Dataset ------------------------------------------------------------------------------

std::vector<int64_t> Hdf5Dataset::shape() const {
  Id space(H5Dget_space(h_.get()));
  const int nd = space.ok() ? H5Sget_simple_extent_ndims(space) : -1;
  TPI_CHECK(nd >= 0, file_ << ": tensor " << name_ << ": unreadable dataspace");
  std::vector<hsize_t> dims(static_cast<size_t>(nd));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

H5Elem Hdf5Dataset::elem() const {
  Id type(H5Dget_type(h_.get()));
  TPI_CHECK(type.ok(), file_ << ": tensor " << name_ << ": unreadable datatype");
  return classify(type);
}

std::string Hdf5Dataset::elem_description() const {
  Id type(H5Dget_type(h_.get()));
  TPI_CHECK(type.ok(), file_ << ": tensor " << name_ << ": unreadable datatype");
  return describe_type(type);
}

bool Hdf5Dataset::has_attr(const std::string& attr) const {
  return H5Aexists(h_.get(), attr.c_str()) > 0;
}

std::vector<int64_t> Hdf5Dataset::attr_ints(const std::string& attr) const {
  return read_int_attr(h_.get(), attr, file_ + ": tensor " + name_);
}

int64_t Hdf5Dataset::attr_int(const std::string& attr) const {
  return read_scalar_int_attr(h_.get(), attr, file_ + ": tensor " + name_);
}

void Hdf5Dataset::read(void* out, size_t bytes, H5Elem as) const {
  const H5Elem stored = elem();
  TPI_CHECK(stored == as, file_ << ": tensor " << name_ << ": stored as " << elem_description()
                                << ", cannot read it as "
                                << (as == H5Elem::f32 ? "float32" : "another type"));
  size_t elem_size = 0;
  hid_t mem = -1;
  switch (as) {
    case H5Elem::f32:
      elem_size = 4;
      mem = H5T_NATIVE_FLOAT;
      break;
    case H5Elem::u16:
      elem_size = 2;
      mem = H5T_NATIVE_UINT16;
      break;
    case H5Elem::i64:
      elem_size = 8;
      mem = H5T_NATIVE_INT64;
      break;
    case H5Elem::i8:
      elem_size = 1;
      mem = H5T_NATIVE_INT8;
      break;
    case H5Elem::other:
      TPI_FAIL(file_ << ": tensor " << name_ << ": unsupported element type");
  }
  size_t n = 1;
  for (int64_t s : shape()) n *= static_cast<size_t>(s);
  TPI_CHECK(n * elem_size == bytes, file_ << ": tensor " << name_ << ": buffer of " << bytes
                                          << " bytes for " << n * elem_size << " bytes of data");
  TPI_CHECK(
      H5Dread(h_.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0,
      file_ << ": tensor " << name_ << ": reading the data failed (file truncated or corrupt?)");
}

}  // namespace tpinfer
