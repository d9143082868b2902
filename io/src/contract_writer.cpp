#include "exospec/io/contract_writer.hpp"

#include "exospec/time.hpp"
#include "exospec/version.hpp"

namespace exospec::io {

void write_root_attributes(FileWriter& w, std::string_view config_text) {
  w.create_group("/");
  w.set_attribute("/", "schema", schema::kSchemaName);
  w.set_attribute("/", "schema_version", schema::kSchemaVersion);
  w.set_attribute("/", "software_version", std::string_view(kVersion));
  w.set_attribute("/", "config", config_text);
  w.set_attribute("/", "created_utc", format_utc(now_j2000()));
}

void create_objects(FileWriter& w, const std::vector<schema::ObjectSpec>& specs,
                    const schema::Sizes& sizes) {
  for (const auto& spec : specs) {
    w.create_dataset(spec.path, spec.dtype, schema::dims_of(spec.extent, sizes), spec.units,
                     spec.description, schema::per_spectrum(spec.extent));
  }
}

}  // namespace exospec::io
