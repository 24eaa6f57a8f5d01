/* berth-run's two modes: one command's supervisor (berth-run.c), and the long-lived launcher
 * that forks a supervisor for each command the agent asks for (serve.c). */
#ifndef BERTH_RUN_H
#define BERTH_RUN_H

/* Runs `cmd` as the child of a subreaper, reporting on fd 3; returns berth-run's exit code. */
int supervise(char **cmd, int linger);

/* The launcher: serves the agent on fd 3 until it goes away. */
int serve(void);

#endif
