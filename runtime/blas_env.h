// OpenBLAS core-type handling. Debian's OpenBLAS 0.3.21 picks its kernels from a CPU table at
// load time; on CPUs missing from that table it silently falls back to its slowest kernels
// (~5x slower sgemm). The choice can only be forced through OPENBLAS_CORETYPE *before the
// process starts*, so the CLI re-executes itself once with the variable set
// (ensure_fast_blas), and embedders get a warning (blas_diagnostics) telling them what to set.
#pragma once

#include <string>

namespace edgetrain {

struct BlasInfo {
  std::string core;            // the core OpenBLAS runs ("SkylakeX", "Haswell", "Prescott", ...)
  std::string config;          // openblas_get_config()
  std::string recommended;     // the core type this CPU should use ("SkylakeX", "Haswell", "")
  std::string env;             // OPENBLAS_CORETYPE as set in the environment ("" when unset)
  bool degraded = false;       // the running core is weaker than the CPU supports
  int threads = 1;             // OpenBLAS threads
};

BlasInfo blas_info();
// The core whose single-precision GEMM kernels `core` runs in OpenBLAS 0.3.21: Cooperlake and
// SapphireRapids add bf16/int8 kernels to SkylakeX's and keep its sgemm, so all three answer
// "SkylakeX"; any other core answers itself. Timings measured on one apply to the others
// (OPENBLAS_CORETYPE=auto picks Cooperlake on CPUs with avx512_bf16; the re-exec picks SkylakeX).
std::string blas_sgemm_family(const std::string& core);
// One line for `edgetrain --version` / diagnostics: "OpenBLAS core SkylakeX (OPENBLAS_CORETYPE=auto), 2 threads".
std::string blas_summary();

// For programs: when OpenBLAS runs a degraded core and OPENBLAS_CORETYPE is unset, set it to the
// recommended core and exec this program again with the same arguments (once). Returns only when
// no re-exec was needed or it failed (then a warning is printed to stderr).
void ensure_fast_blas(int argc, char** argv);

// For libraries: a warning text when BLAS is degraded ("" otherwise).
std::string blas_warning();

// edgetrain runs OpenBLAS on one thread and splits GEMMs over its own pool (ops/gemm.h).
void set_blas_threads(int threads);

}  // namespace edgetrain
