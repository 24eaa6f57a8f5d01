/*
 * berth-run: the parent of every command the agent runs, so that no process the command
 * starts can get away from it. Mounted read-only into every environment next to agent.js.
 *
 *   berth-run [--linger] CMD [ARGS...]     one command, as described here
 *   berth-run --serve                      the launcher (serve.c): the agent starts it once,
 *                                          and it forks this same supervisor for each command
 *
 * It makes itself a child subreaper (PR_SET_CHILD_SUBREAPER): a process of the command
 * that is orphaned (a double fork, a daemon, a fork bomb) is re-parented to berth-run,
 * never to the container's init, whatever process group or session it moved to. So while
 * berth-run lives, "every process of the command" is exactly "every descendant of
 * berth-run", and the agent can find them all in /proc and kill them. berth-run reaps
 * them all, so killed processes do not linger as zombies holding pids.
 *
 * The command runs in its own session (its signals from the daemon go to its group). fds
 * 0-2 are the command's; berth-run lets go of its own copies. fd 3 is a socket to the agent:
 *
 *   berth-run -> agent  "pid N\n"                 the command is running as pid N
 *                       "error fork|exec ERRNO\n"  it could not start
 *                       "exit CODE\n" | "signal N\n"  the command itself ended
 *   agent -> berth-run  "hold\n"                  do not exit while any descendant lives
 *
 * After the command ends, berth-run exits at once unless it holds (asked to, or --linger:
 * the command has a deadline, so what it left running must stay findable until then); then
 * it exits when its last descendant is gone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run.h"

#define CTL 3

static int ctl_open;

static void report(const char *fmt, ...) {
  if (!ctl_open) return;
  char line[64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n <= 0) return;
  while (write(CTL, line, (size_t)n) < 0 && errno == EINTR) {
  }
}

/* Reads what the agent sent; returns 1 when it asked to hold. */
static int read_ctl(void) {
  int hold = 0;
  char buf[256];
  while (ctl_open) {
    ssize_t n = read(CTL, buf, sizeof buf - 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break; /* EAGAIN: nothing more for now */
    if (n == 0) {
      ctl_open = 0; /* the agent went away: carry on, the command is still ours to reap */
      break;
    }
    buf[n] = 0;
    if (strstr(buf, "hold")) hold = 1;
  }
  return hold;
}

int supervise(char **cmd, int linger) {
  /* Its own session and group (the launcher's children start in the launcher's). */
  setsid();
  ctl_open = fcntl(CTL, F_GETFD) != -1;
  /* Without it (an old kernel) the agent still finds the command's processes by marker. */
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  int errp[2];
  if (sfd < 0 || pipe2(errp, O_CLOEXEC) < 0) {
    report("error fork %d\n", errno);
    return 126;
  }

  pid_t pid = fork();
  if (pid < 0) {
    report("error fork %d\n", errno); /* EAGAIN: the environment has no pids left */
    return 126;
  }
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    setsid();
    close(CTL);
    close(errp[0]);
    execvp(cmd[0], cmd);
    int e = errno;
    while (write(errp[1], &e, sizeof e) < 0 && errno == EINTR) {
    }
    _exit(127);
  }
  close(errp[1]);
  int exec_errno = 0;
  ssize_t got;
  while ((got = read(errp[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {
  }
  close(errp[0]);
  if (got == (ssize_t)sizeof exec_errno) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    report("error exec %d\n", exec_errno);
    return 127;
  }

  /* Only the command holds its stdio now: its output ends when the command's processes do. */
  int devnull = open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    if (devnull > 2) close(devnull);
  }
  /* The command may signal its own session; berth-run stays to reap (only SIGKILL ends it). */
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGUSR1, SIG_IGN);
  signal(SIGUSR2, SIG_IGN);
  if (ctl_open) fcntl(CTL, F_SETFL, fcntl(CTL, F_GETFL) | O_NONBLOCK);
  report("pid %d\n", pid);

  int hold = 0;
  int command_done = 0;
  for (;;) {
    struct pollfd fds[2] = {
        {.fd = sfd, .events = POLLIN},
        {.fd = ctl_open ? CTL : -1, .events = POLLIN},
    };
    if (poll(fds, 2, -1) < 0 && errno != EINTR) break;
    if (read_ctl()) hold = 1;
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) > 0) {
    }
    int none_left = 0;
    for (;;) {
      int status;
      pid_t r = waitpid(-1, &status, WNOHANG);
      if (r == 0) break;
      if (r < 0) {
        if (errno == EINTR) continue;
        none_left = errno == ECHILD;
        break;
      }
      if (r == pid) {
        command_done = 1;
        if (WIFSIGNALED(status)) report("signal %d\n", WTERMSIG(status));
        else report("exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 1);
      }
    }
    if (!command_done) continue;
    /* "hold" may be on its way in the same instant the command died: read it first. */
    if (read_ctl()) hold = 1;
    if (none_left || !(hold || linger)) return 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--serve") == 0) return serve();
  int linger = 0;
  int first = 1;
  if (argc > 1 && strcmp(argv[1], "--linger") == 0) {
    linger = 1;
    first = 2;
  }
  if (argc <= first) {
    fprintf(stderr, "usage: berth-run --serve | [--linger] CMD [ARGS...]\n");
    return 2;
  }
  return supervise(argv + first, linger);
}
