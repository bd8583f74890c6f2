/* The public header compiles alone as strict C99 (-std=c99 -Wpedantic -Werror: see
 * tests/meson.build) and links into a C program; a few calls check that the C side sees the
 * same structs and values the library does. Exit status 0 on success. */
#include "edgetrain/edgetrain.h"

#include <stdio.h>
#include <string.h>

int main(void) {
  et_trainer_config cfg;
  et_trainer* t = (et_trainer*)&cfg; /* must be overwritten with NULL on failure */
  et_trainer_config_init(&cfg);
  if (cfg.struct_size != sizeof cfg || strcmp(cfg.model, "small_cnn") != 0 || cfg.batch != 32) {
    fprintf(stderr, "et_trainer_config_init: unexpected defaults\n");
    return 1;
  }
  cfg.batch = 0;
  if (et_trainer_create(&cfg, &t) != ET_INVALID_ARGUMENT || t != NULL || et_last_error()[0] == '\0') {
    fprintf(stderr, "et_trainer_create with batch 0 did not fail cleanly\n");
    return 1;
  }
  printf("edgetrain %s from C99: %s\n", et_version(), et_last_error());
  return 0;
}
