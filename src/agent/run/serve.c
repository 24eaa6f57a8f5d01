/*
 * berth-run --serve: the launcher. The agent starts it once and asks it for every command, so
 * that no command costs a fork of the agent's Node process (tens of megabytes of page tables
 * to copy, then a fault for every page either side touches: most of what a command's start
 * used to cost). For each command it forks a supervisor (berth-run.c's supervise: the
 * subreaper that forks the command in its own session), gives it the command's stdio and a
 * control socket, and carries all of it over its one socket to the agent, fd 3:
 *
 *   frame: u8 type, u32 id, u32 length (little-endian), then the payload
 *
 *   agent -> launcher   START  u8 flags (1 stdin, 2 linger), u32 argc, u32 envc,
 *                              then cwd, argv and env as NUL-terminated strings
 *                       STDIN data | STDIN_END | HOLD | PAUSE u8 stream | RESUME u8 stream
 *                       CLOSE u8 stream (the agent stops reading it)
 *   launcher -> agent   RUNNER u32 pid   the supervisor's pid, at once after its fork
 *                       LINE text        one line of berth-run's report ("pid N", "exit N", ...)
 *                       OUT u8 stream, data | EOF u8 stream | STDIN_ACK
 *                       GONE u8 signalled, u32 n   the supervisor ended (after its last LINE)
 *
 * Streams are 1 (stdout) and 2 (stderr). Each STDIN frame is answered by one STDIN_ACK once
 * it is in the command's pipe (or the command closed it), so the agent sends at its pace.
 * The launcher dies with the agent (PR_SET_PDEATHSIG), and exits when fd 3 closes; the
 * supervisors then carry on as when the agent goes away, and the agent, started again, ends
 * what is left by each command's marker.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run.h"

#define AGENT 3
#define CHUNK 65536
#define MAX_FRAME (64u << 20)

enum { START = 1, STDIN = 2, STDIN_END = 3, HOLD = 4, PAUSE = 5, RESUME = 6, CLOSE = 7 };
enum { RUNNER = 16, LINE = 17, OUT = 18, EOF_ = 19, STDIN_ACK = 20, GONE = 21 };

struct chunk {
  struct chunk *next;
  size_t len, off;
  char data[];
};

struct cmd {
  struct cmd *next;
  uint32_t id;
  pid_t pid; /* the supervisor; 0 once reaped */
  int out[3];  /* [1] stdout, [2] stderr read ends; -1 when closed */
  int paused[3];
  int in; /* stdin's write end, -1 when closed */
  int in_end; /* close stdin once the queue is written */
  struct chunk *queue, *tail;
  int ctl; /* the supervisor's control socket */
  char line[256];
  size_t line_len;
};

static struct cmd *cmds;

static void put32(unsigned char *p, uint32_t v) {
  p[0] = v & 0xff;
  p[1] = (v >> 8) & 0xff;
  p[2] = (v >> 16) & 0xff;
  p[3] = (v >> 24) & 0xff;
}

static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void write_all(const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(AGENT, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) _exit(0); /* the agent is gone */
    c += w;
    n -= (size_t)w;
  }
}

/* One frame to the agent; `pre` (one byte, or none when negative) goes before the payload. */
static void send_frame(int type, uint32_t id, int pre, const void *data, size_t len) {
  unsigned char h[10];
  h[0] = (unsigned char)type;
  put32(h + 1, id);
  put32(h + 5, (uint32_t)(len + (pre >= 0)));
  if (pre >= 0) h[9] = (unsigned char)pre;
  write_all(h, pre >= 0 ? 10 : 9);
  if (len) write_all(data, len);
}

static struct cmd *find(uint32_t id) {
  for (struct cmd *c = cmds; c; c = c->next)
    if (c->id == id) return c;
  return NULL;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static void drop_queue(struct cmd *c) {
  while (c->queue) {
    struct chunk *n = c->queue->next;
    free(c->queue);
    send_frame(STDIN_ACK, c->id, -1, NULL, 0);
    c->queue = n;
  }
  c->tail = NULL;
}

static void close_stdin(struct cmd *c) {
  drop_queue(c);
  close_fd(&c->in);
}

/* Forgets a command once its supervisor is reaped and nothing of it is open. */
static void sweep(void) {
  for (struct cmd **p = &cmds; *p;) {
    struct cmd *c = *p;
    if (c->pid == 0 && c->out[1] < 0 && c->out[2] < 0 && c->ctl < 0) {
      close_stdin(c); /* whatever reads it now was left behind by the command */
      *p = c->next;
      free(c);
    } else p = &c->next;
  }
}

static void close_all_from(int lowest) {
  if (syscall(SYS_close_range, (unsigned)lowest, ~0u, 0) == 0) return;
  for (int fd = lowest; fd < 65536; fd++) close(fd);
}

/* The supervisor's side of the fork: stdio and fd 3 in place, the launcher's own fds gone. */
static void child(int in, int out, int err, int ctl, const char *cwd, char **argv, char **envp, int linger) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
  if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 || dup2(ctl, AGENT) < 0) _exit(126);
  close_all_from(4);
  if (chdir(cwd) < 0) {
    char line[48];
    int n = snprintf(line, sizeof line, "error chdir %d\n", errno);
    if (write(AGENT, line, (size_t)n) < 0) _exit(126);
    _exit(126);
  }
  environ = envp;
  _exit(supervise(argv, linger));
}

static void fail_start(uint32_t id, int e) {
  char line[48];
  int n = snprintf(line, sizeof line, "error fork %d", e);
  send_frame(LINE, id, -1, line, (size_t)n);
  send_frame(EOF_, id, 1, NULL, 0);
  send_frame(EOF_, id, 2, NULL, 0);
  send_frame(GONE, id, 0, "\x7e\0\0\0", 4); /* exit 126 */
}

static void start(uint32_t id, unsigned char *p, uint32_t len) {
  if (len < 9 || find(id)) return fail_start(id, EINVAL);
  int flags = p[0];
  uint32_t argc = get32(p + 1), envc = get32(p + 5);
  if (argc == 0 || argc > len || envc > len) return fail_start(id, EINVAL);
  char **argv = calloc(argc + 1, sizeof *argv);
  char **envp = calloc(envc + 1, sizeof *envp);
  if (!argv || !envp) {
    free(argv);
    free(envp);
    return fail_start(id, ENOMEM);
  }
  /* cwd, argv, env: every string NUL-terminated inside the payload. */
  char *s = (char *)p + 9, *end = (char *)p + len;
  char *cwd = NULL;
  uint32_t total = 1 + argc + envc;
  for (uint32_t i = 0; i < total; i++) {
    char *z = memchr(s, 0, (size_t)(end - s));
    if (!z) {
      free(argv);
      free(envp);
      return fail_start(id, EINVAL);
    }
    if (i == 0) cwd = s;
    else if (i <= argc) argv[i - 1] = s;
    else envp[i - 1 - argc] = s;
    s = z + 1;
  }
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, ctl[2] = {-1, -1};
  int ok = pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0 &&
           socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) == 0;
  if (ok && (flags & 1)) ok = pipe2(in, O_CLOEXEC) == 0;
  else if (ok) ok = (in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;
  pid_t pid = ok ? fork() : -1;
  int e = errno;
  if (pid == 0) child(in[0], out[1], err[1], ctl[1], cwd, argv, envp, (flags & 2) != 0);
  free(argv);
  free(envp);
  int *all[] = {&in[0], &out[1], &err[1], &ctl[1]};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) close_fd(all[i]);
  struct cmd *c = pid > 0 ? calloc(1, sizeof *c) : NULL;
  if (!c) {
    close_fd(&in[1]);
    close_fd(&out[0]);
    close_fd(&err[0]);
    close_fd(&ctl[0]);
    if (pid > 0) kill(pid, SIGKILL); /* reaped with the others; nobody waits for it */
    return fail_start(id, pid > 0 ? ENOMEM : e);
  }
  c->id = id;
  c->pid = pid;
  c->in = in[1];
  c->out[0] = -1;
  c->out[1] = out[0];
  c->out[2] = err[0];
  c->ctl = ctl[0];
  int nonblocking[] = {c->in, c->out[1], c->out[2], c->ctl};
  for (size_t i = 0; i < sizeof nonblocking / sizeof *nonblocking; i++)
    if (nonblocking[i] >= 0) fcntl(nonblocking[i], F_SETFL, O_NONBLOCK);
  c->next = cmds;
  cmds = c;
  unsigned char b[4];
  put32(b, (uint32_t)pid);
  send_frame(RUNNER, id, -1, b, 4);
}

/* Reads the supervisor's report; each whole line goes to the agent. */
static void read_ctl(struct cmd *c) {
  while (c->ctl >= 0) {
    ssize_t n = read(c->ctl, c->line + c->line_len, sizeof c->line - 1 - c->line_len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      close_fd(&c->ctl);
      return;
    }
    c->line_len += (size_t)n;
    char *nl;
    while ((nl = memchr(c->line, '\n', c->line_len))) {
      size_t len = (size_t)(nl - c->line);
      send_frame(LINE, c->id, -1, c->line, len);
      memmove(c->line, nl + 1, c->line_len - len - 1);
      c->line_len -= len + 1;
    }
    if (c->line_len == sizeof c->line - 1) c->line_len = 0; /* no such line: drop it */
  }
}

static void read_out(struct cmd *c, int which) {
  static char buf[CHUNK];
  ssize_t n;
  while ((n = read(c->out[which], buf, sizeof buf)) < 0 && errno == EINTR) {
  }
  if (n < 0 && errno == EAGAIN) return;
  if (n > 0) return send_frame(OUT, c->id, which, buf, (size_t)n);
  close_fd(&c->out[which]);
  send_frame(EOF_, c->id, which, NULL, 0);
}

static void write_in(struct cmd *c) {
  while (c->queue) {
    struct chunk *q = c->queue;
    ssize_t n = write(c->in, q->data + q->off, q->len - q->off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) return close_stdin(c); /* EPIPE: it does not read its stdin any more */
    q->off += (size_t)n;
    if (q->off < q->len) continue;
    c->queue = q->next;
    if (!c->queue) c->tail = NULL;
    free(q);
    send_frame(STDIN_ACK, c->id, -1, NULL, 0);
  }
  if (c->in_end) close_fd(&c->in);
}

static void from_agent(int type, uint32_t id, unsigned char *p, uint32_t len) {
  if (type == START) return start(id, p, len);
  struct cmd *c = find(id);
  if (type == STDIN) {
    if (!c || c->in < 0 || c->in_end) return send_frame(STDIN_ACK, id, -1, NULL, 0);
    struct chunk *q = malloc(sizeof *q + len);
    if (!q) return send_frame(STDIN_ACK, id, -1, NULL, 0);
    q->next = NULL;
    q->len = len;
    q->off = 0;
    memcpy(q->data, p, len);
    if (c->tail) c->tail->next = q;
    else c->queue = q;
    c->tail = q;
    return write_in(c);
  }
  if (!c) return;
  int which = len >= 1 && (p[0] == 1 || p[0] == 2) ? p[0] : 0;
  if (type == STDIN_END) {
    c->in_end = 1;
    if (c->in >= 0) write_in(c);
  } else if (type == HOLD) {
    if (c->ctl >= 0 && write(c->ctl, "hold\n", 5) < 0) {
      /* the supervisor is gone already: nothing to hold */
    }
  } else if (which && type == PAUSE) c->paused[which] = 1;
  else if (which && type == RESUME) c->paused[which] = 0;
  else if (which && type == CLOSE && c->out[which] >= 0) {
    close_fd(&c->out[which]);
    send_frame(EOF_, c->id, which, NULL, 0); /* every stream ends with one EOF */
  }
}

static void reap(void) {
  for (;;) {
    int status;
    pid_t r = waitpid(-1, &status, WNOHANG);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return;
    for (struct cmd *c = cmds; c; c = c->next) {
      if (c->pid != r) continue;
      c->pid = 0;
      read_ctl(c); /* its last report comes before its end */
      close_fd(&c->ctl);
      unsigned char b[4];
      int sig = WIFSIGNALED(status);
      put32(b, (uint32_t)(sig ? WTERMSIG(status) : WIFEXITED(status) ? WEXITSTATUS(status) : 1));
      send_frame(GONE, c->id, sig, b, 4);
      break;
    }
  }
}

int serve(void) {
  /* An agent gone before this ran is seen as fd 3's end, below (the agent may be pid 1). */
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) return 1;
  fcntl(AGENT, F_SETFD, FD_CLOEXEC);
  size_t cap = 1 << 16, have = 0;
  unsigned char *buf = malloc(cap);
  struct pollfd *fds = NULL;
  struct cmd **owner = NULL;
  int *what = NULL;
  size_t fcap = 0;
  if (!buf) return 1;
  for (;;) {
    size_t n = 0, need = 2;
    for (struct cmd *c = cmds; c; c = c->next) need += 4;
    if (need > fcap) {
      fcap = need * 2;
      fds = realloc(fds, fcap * sizeof *fds);
      owner = realloc(owner, fcap * sizeof *owner);
      what = realloc(what, fcap * sizeof *what);
      if (!fds || !owner || !what) return 1;
    }
    fds[n++] = (struct pollfd){.fd = AGENT, .events = POLLIN};
    fds[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    for (struct cmd *c = cmds; c; c = c->next) {
      for (int w = 1; w <= 2; w++) {
        if (c->out[w] < 0 || c->paused[w]) continue;
        owner[n] = c, what[n] = w;
        fds[n++] = (struct pollfd){.fd = c->out[w], .events = POLLIN};
      }
      if (c->in >= 0 && c->queue) {
        owner[n] = c, what[n] = 0;
        fds[n++] = (struct pollfd){.fd = c->in, .events = POLLOUT};
      }
      if (c->ctl >= 0) {
        owner[n] = c, what[n] = 3;
        fds[n++] = (struct pollfd){.fd = c->ctl, .events = POLLIN};
      }
    }
    if (poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    for (size_t i = 2; i < n; i++) {
      if (!fds[i].revents) continue;
      struct cmd *c = owner[i];
      if (what[i] == 3) read_ctl(c);
      else if (what[i] == 0 && c->in >= 0) write_in(c);
      else if (what[i] != 0 && c->out[what[i]] >= 0) read_out(c, what[i]);
    }
    if (fds[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
      reap();
    }
    if (fds[0].revents) {
      if (have == cap) {
        cap *= 2;
        if (cap > MAX_FRAME + 9 || !(buf = realloc(buf, cap))) return 1;
      }
      ssize_t r = read(AGENT, buf + have, cap - have);
      if (r < 0 && errno != EINTR && errno != EAGAIN) return 0;
      if (r == 0) return 0; /* the agent went away */
      if (r > 0) have += (size_t)r;
      size_t off = 0;
      while (have - off >= 9) {
        uint32_t len = get32(buf + off + 5);
        if (len > MAX_FRAME) return 1;
        if (have - off - 9 < len) {
          if (len + 9 > cap) {
            while (cap < len + 9) cap *= 2;
            if (!(buf = realloc(buf, cap))) return 1;
          }
          break;
        }
        from_agent(buf[off], get32(buf + off + 1), buf + off + 9, len);
        off += 9 + len;
      }
      memmove(buf, buf + off, have - off);
      have -= off;
    }
    sweep();
  }
}
