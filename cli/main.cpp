// exospec: the command-line tool (command.hpp).
#include "command.hpp"
#include "exospec/pipeline/run.hpp"

int main(int argc, char** argv) {
  exospec::pipeline::skip_hdf5_shutdown_at_exit();  // first: see its comment
  return exospec::cli::command(argc, argv);
}
