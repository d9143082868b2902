#pragma once
// Error types for bad input and environment (channel 3 of docs/ARCHITECTURE.md).
//
// Programmer bugs are assertions; numerical outcomes are per-result status codes;
// everything a user can get wrong (a file, an object in it, an option, a
// configuration key) is one of these exceptions. Each carries where the problem
// is (file and object, or option) so that the command-line tool can print one
// line: "exospec: error: <file>: <object>: <message>".
#include <stdexcept>
#include <string>
#include <utility>

namespace exospec {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A problem with a file or an object inside it. file() and object() may be empty
// when not known (e.g. object() for an unreadable file).
class FileError : public Error {
 public:
  FileError(std::string file, std::string object, std::string message)
      : Error(compose(file, object, message)),
        file_(std::move(file)),
        object_(std::move(object)),
        message_(std::move(message)) {}
  const std::string& file() const noexcept { return file_; }
  const std::string& object() const noexcept { return object_; }
  const std::string& message() const noexcept { return message_; }

 private:
  static std::string compose(const std::string& file, const std::string& object,
                             const std::string& message) {
    std::string s = file.empty() ? std::string("<memory>") : file;
    if (!object.empty()) s += ": " + object;
    return s + ": " + message;
  }
  std::string file_, object_, message_;
};

// A file that breaks the data contract of SCHEMA.md (missing object, wrong
// dtype or shape, inconsistent N).
class SchemaError : public FileError {
 public:
  using FileError::FileError;
};

// A bad configuration key or value, or a bad command-line option. where() is
// the file (or "--option") and key the dotted key path.
class ConfigError : public FileError {
 public:
  using FileError::FileError;
};

}  // namespace exospec
