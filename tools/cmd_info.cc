// `edgetrain info` / `edgetrain --version`: what a bug report needs.
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "runtime/blas_env.h"
#include "tools/commands.h"

namespace edgetrain::cli {

int cmd_info(int, char**) {
  std::string cpu = "unknown";
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  BlasInfo b = blas_info();
  std::printf("edgetrain 0.1.0\n");
  std::printf("cpu: %s, %u hardware threads\n", cpu.c_str(), std::thread::hardware_concurrency());
  std::printf("blas: %s\n", blas_summary().c_str());
  std::printf("blas config: %s\n", b.config.c_str());
  if (b.degraded) std::printf("%s\n", blas_warning().c_str());
  return 0;
}

}  // namespace edgetrain::cli
