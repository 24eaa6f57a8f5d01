/*
 * `berth exec` arguments, read exactly as the Node CLI reads them (src/cli/args.ts with the
 * spec of cmdExec), and the exec request they make, byte for byte the JSON the Node CLI sends.
 * Anything the native client does not do itself makes exec_args return a reason to hand over.
 */
#ifndef BERTH_ARGS_H
#define BERTH_ARGS_H

#include "buf.h"

struct exec_args {
  const char *name;
  char **cmd;
  int ncmd;
  const char *cwd;
  const char **env; /* KEY=VALUE, in the order given */
  int nenv;
  const char *timeout; /* as given: it is also what the timed-out message prints */
  double timeout_ms;
  int resume;
};

/* Reads argv (after "exec"); returns NULL when handled here, else why the Node CLI must do it. */
const char *exec_args(int argc, char **argv, struct exec_args *a);

/* The exec request, as the Node CLI's JSON.stringify writes it. */
void exec_request(const struct exec_args *a, int interactive_stdin, struct buf *out);

/* /v1/envs/NAME/exec/ws with NAME as encodeURIComponent writes it. */
void exec_path(const char *name, struct buf *out);

#endif
