/*
 * berth-pty: runs a command on a new pseudo-terminal and relays it over plain pipes, so the
 * in-environment agent (plain Node.js, no native modules) can serve interactive shells.
 * Mounted read-only into every environment next to agent.js.
 *
 *   berth-pty COLS ROWS CMD [ARGS...]
 *
 * fd 0  -> bytes typed into the terminal (Ctrl-C arrives as 0x03 and the line discipline
 *          turns it into SIGINT for the foreground process group, so job control works)
 * fd 1  <- everything the terminal prints
 * fd 3  -> control lines: "resize COLS ROWS\n"
 * Exit status: the command's, or 128+signal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

static int write_all(int fd, const char *buf, ssize_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, (size_t)n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += w;
    n -= w;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: berth-pty COLS ROWS CMD [ARGS...]\n");
    return 2;
  }
  struct winsize ws = {0};
  ws.ws_col = (unsigned short)atoi(argv[1]);
  ws.ws_row = (unsigned short)atoi(argv[2]);
  if (ws.ws_col == 0) ws.ws_col = 80;
  if (ws.ws_row == 0) ws.ws_row = 24;

  int master;
  pid_t pid = forkpty(&master, NULL, NULL, &ws);
  if (pid < 0) {
    perror("berth-pty: forkpty");
    return 1;
  }
  if (pid == 0) {
    setenv("TERM", getenv("TERM") ? getenv("TERM") : "xterm-256color", 0);
    execvp(argv[3], argv + 3);
    fprintf(stderr, "berth-pty: %s: %s\r\n", argv[3], strerror(errno));
    _exit(127);
  }
  signal(SIGPIPE, SIG_IGN);

  int ctl_open = fcntl(3, F_GETFD) != -1;
  int exited = 0;
  int status = 0;
  int in_open = 1;
  char buf[65536];
  char ctl[256];
  size_t ctl_len = 0;
  for (;;) {
    struct pollfd fds[3] = {
        {.fd = master, .events = POLLIN},
        {.fd = in_open ? 0 : -1, .events = POLLIN},
        {.fd = ctl_open ? 3 : -1, .events = POLLIN},
    };
    int ready = poll(fds, 3, 200);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    /* The shell itself has exited: like a terminal window closing, drain what it printed,
       then hang up whatever it left running on the terminal. */
    if (!exited && waitpid(pid, &status, WNOHANG) == pid) exited = 1;
    if (exited) {
      struct pollfd last = {.fd = master, .events = POLLIN};
      while (poll(&last, 1, 50) > 0 && (last.revents & POLLIN)) {
        ssize_t n = read(master, buf, sizeof buf);
        if (n <= 0 || write_all(1, buf, n) < 0) break;
      }
      kill(-pid, SIGHUP);
      break;
    }
    if (ready == 0) continue;
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(master, buf, sizeof buf);
      if (n <= 0) break; /* EIO: every process holding the terminal has gone */
      if (write_all(1, buf, n) < 0) break;
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(0, buf, sizeof buf);
      if (n <= 0) {
        in_open = 0; /* the agent hangs the session up itself when its client goes */
      } else if (write_all(master, buf, n) < 0) {
        break;
      }
    }
    if (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(3, ctl + ctl_len, sizeof ctl - ctl_len - 1);
      if (n <= 0) {
        ctl_open = 0;
        continue;
      }
      ctl_len += (size_t)n;
      ctl[ctl_len] = 0;
      char *nl;
      while ((nl = strchr(ctl, '\n')) != NULL) {
        *nl = 0;
        unsigned cols, rows;
        int sig;
        if (sscanf(ctl, "signal %d", &sig) == 1 && sig > 0 && sig < 65) {
          pid_t fg = tcgetpgrp(master); /* the terminal's foreground job, as a typed key would */
          kill(fg > 0 ? -fg : -pid, sig);
        } else if (sscanf(ctl, "resize %u %u", &cols, &rows) == 2 && cols > 0 && rows > 0) {
          ws.ws_col = (unsigned short)cols;
          ws.ws_row = (unsigned short)rows;
          ioctl(master, TIOCSWINSZ, &ws); /* the kernel sends SIGWINCH to the foreground group */
        }
        size_t rest = ctl_len - (size_t)(nl + 1 - ctl);
        memmove(ctl, nl + 1, rest);
        ctl_len = rest;
        ctl[ctl_len] = 0;
      }
      if (ctl_len >= sizeof ctl - 1) ctl_len = 0;
    }
  }
  if (!exited) {
    kill(-pid, SIGHUP);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}
