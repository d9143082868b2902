#pragma once
// How the ranks of an MPI run or simulation stop together (MPI builds only):
// every phase, and every block before its collective write, ends with an
// agreement on whether any rank failed.
#include <mpi.h>

#include <chrono>
#include <exception>
#include <string>
#include <thread>

#include "exospec/pipeline/run_mpi.hpp"
#include "run_parts.hpp"

namespace exospec::pipeline::detail {

inline std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown error";
  }
}

inline void bcast_string(std::string& s, int root, MPI_Comm comm) {
  unsigned long long n = s.size();
  MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, root, comm);
  s.resize(static_cast<std::size_t>(n));
  if (n > 0) MPI_Bcast(s.data(), static_cast<int>(n), MPI_CHAR, root, comm);
}

class Agreement final : public BlockAgreement {
 public:
  explicit Agreement(MPI_Comm comm) : comm_(comm) {
    MPI_Comm_rank(comm, &rank_);
    MPI_Comm_size(comm, &size_);
  }
  void agree(std::exception_ptr error) override {
    if (!error && held != nullptr && *held) error = *held;
    int mine = error ? rank_ : size_, first = size_;
    // Waited for without spinning: a rank here waits for the slower ones,
    // whose compute threads would share its cores with MPI's busy polling
    // (2 ranks on 2 cores: 1.3 s of CPU spent polling in a 2 s run).
    MPI_Request request;
    MPI_Iallreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm_, &request);
    int done = 0;
    for (int idle = 0;; ++idle) {
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (done != 0) break;
      std::this_thread::sleep_for(std::chrono::microseconds(idle < 50 ? 10 : 200));
    }
    if (first == size_) return;
    std::string message;
    if (rank_ == first) message = describe(error);
    bcast_string(message, first, comm_);
    if (error) std::rethrow_exception(error);
    throw RankFailed(first, message);
  }
  // Runs f, then agrees on whether it (or any rank's) failed.
  template <class F>
  void phase(F&& f) {
    std::exception_ptr error;
    try {
      f();
    } catch (...) {
      error = std::current_exception();
    }
    agree(error);
  }

  // An error held elsewhere until the next agreement (a failed write,
  // HeldRowSink), reported as this rank's when agree() is given none.
  const std::exception_ptr* held = nullptr;

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace exospec::pipeline::detail
