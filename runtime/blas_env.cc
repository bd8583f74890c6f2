#include "runtime/blas_env.h"

#include <cblas.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" {
char* openblas_get_corename(void);
char* openblas_get_config(void);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int);
}

namespace edgetrain {
namespace {

const char* recommended_core() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

// Cores that use AVX-512 (resp. AVX2) sgemm kernels in OpenBLAS 0.3.21.
bool core_uses_avx512(const std::string& c) {
  return c == "SkylakeX" || c == "Cooperlake" || c == "SapphireRapids";
}
bool core_uses_avx2(const std::string& c) {
  return core_uses_avx512(c) || c == "Haswell" || c == "Zen" || c == "SkylakeX";
}

}  // namespace

std::string blas_sgemm_family(const std::string& core) { return core_uses_avx512(core) ? "SkylakeX" : core; }

BlasInfo blas_info() {
  BlasInfo b;
  b.core = openblas_get_corename();
  b.config = openblas_get_config();
  b.recommended = recommended_core();
  const char* env = std::getenv("OPENBLAS_CORETYPE");
  b.env = env ? env : "";
  if (b.recommended == "SkylakeX") b.degraded = !core_uses_avx512(b.core);
  else if (b.recommended == "Haswell") b.degraded = !core_uses_avx2(b.core);
  b.threads = openblas_get_num_threads();
  return b;
}

std::string blas_summary() {
  BlasInfo b = blas_info();
  std::string s = "OpenBLAS core " + b.core + " (OPENBLAS_CORETYPE=" + (b.env.empty() ? "unset" : b.env) + "), " +
                  std::to_string(b.threads) + " thread" + (b.threads == 1 ? "" : "s");
  if (b.degraded) s += "; DEGRADED: this CPU supports " + b.recommended;
  return s;
}

std::string blas_warning() {
  BlasInfo b = blas_info();
  if (!b.degraded) return "";
  return "edgetrain: warning: OpenBLAS runs its '" + b.core + "' kernels on a CPU that supports '" + b.recommended +
         "' (several times slower). Set OPENBLAS_CORETYPE=" + b.recommended + " before starting the program.";
}

void ensure_fast_blas(int argc, char** argv) {
  (void)argc;
  BlasInfo b = blas_info();
  if (!b.degraded) return;
  if (b.env.empty() && std::getenv("EDGETRAIN_BLAS_REEXEC") == nullptr) {
    setenv("OPENBLAS_CORETYPE", b.recommended.c_str(), 1);
    setenv("EDGETRAIN_BLAS_REEXEC", "1", 1);  // never loop
    execv("/proc/self/exe", argv);
    // execv returned: it failed; carry on slowly but say so.
  }
  std::fprintf(stderr, "%s\n", blas_warning().c_str());
}

void set_blas_threads(int threads) { openblas_set_num_threads(threads); }

}  // namespace edgetrain
