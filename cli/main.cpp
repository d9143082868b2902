// exospec: the command-line tool (command.hpp).
#include <cstdlib>

#include "command.hpp"
#include "exospec/pipeline/run.hpp"
#if EXOSPEC_HAVE_MPI
#include <mpi.h>

namespace {
// Whether a launcher (mpirun, mpiexec, srun) started this process: each sets
// its process-management variables. Run directly, the MPI build's command is
// the serial one and does not start MPI (a singleton MPI start costs a
// daemon, and fails where PMIx's shared memory cannot be made).
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}
}  // namespace
#endif

int main(int argc, char** argv) {
  exospec::pipeline::skip_hdf5_shutdown_at_exit();  // first: see its comment
#if EXOSPEC_HAVE_MPI
  if (launched_by_mpi()) {
    // HDF5's calls, and so MPI's, stay on the main thread (run_parts.hpp).
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    const int code = exospec::cli::command(argc, argv);
    // Parallel HDF5 shuts itself down inside MPI_Finalize, whatever
    // skip_hdf5_shutdown_at_exit says, and after a file whose last flush
    // failed that shutdown crashes (HDFGroup/hdf5 #2257). A failed run
    // (every rank fails together) therefore ends without it, once every rank
    // has printed what it has to: a rank that leaves unfinalized makes
    // mpirun end the others.
    if (code == 0) {
      MPI_Finalize();
    } else {
      MPI_Barrier(MPI_COMM_WORLD);
    }
    return code;
  }
#endif
  return exospec::cli::command(argc, argv);
}
