#pragma once
// Writing the parts every exospec file shares (shared/SCHEMA.md): the root
// attributes and contract objects created from the schema tables.
#include <string_view>
#include <vector>

#include "exospec/io/file.hpp"
#include "exospec/io/schema.hpp"

namespace exospec::io {

// The root group with schema, schema_version, software_version, config (the
// effective configuration as text) and created_utc (now).
void write_root_attributes(FileWriter& w, std::string_view config_text);

// Creates each object of `specs` with its dtype, shape (from `sizes`), units
// and description; per-spectrum arrays are chunked in whole rows.
void create_objects(FileWriter& w, const std::vector<schema::ObjectSpec>& specs,
                    const schema::Sizes& sizes);

}  // namespace exospec::io
