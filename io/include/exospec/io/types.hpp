#pragma once
// Element types of the exospec data contract (shared/SCHEMA.md).
#include <cstdint>
#include <string_view>
#include <vector>

namespace exospec::io {

enum class DType : std::uint8_t { kU8, kU32, kI32, kI64, kF32, kF64, kString };

// "uint8", "uint32", "int32", "int64", "float32", "float64", "string".
std::string_view dtype_name(DType t) noexcept;

template <class T>
struct DTypeOf;
template <>
struct DTypeOf<std::uint8_t> {
  static constexpr DType value = DType::kU8;
};
template <>
struct DTypeOf<std::uint32_t> {
  static constexpr DType value = DType::kU32;
};
template <>
struct DTypeOf<std::int32_t> {
  static constexpr DType value = DType::kI32;
};
template <>
struct DTypeOf<std::int64_t> {
  static constexpr DType value = DType::kI64;
};
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::kF32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::kF64;
};

using Dims = std::vector<std::uint64_t>;

}  // namespace exospec::io
