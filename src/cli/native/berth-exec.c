/*
 * berth-exec: `berth exec ENV -- CMD...` without starting Node. bin/berth runs it for `exec`;
 * it speaks the Node CLI's wire to the local daemon (a WebSocket at /v1/envs/ENV/exec/ws on
 * $BERTH_HOME/berth.sock) and behaves as the Node CLI does: streamed stdout and stderr, stdin
 * when it is not a terminal (read no faster than the node takes it), SIGINT, SIGTERM, SIGHUP
 * and SIGQUIT passed on to the command, the command's exit code, berth's one-line errors with
 * their exit codes, --timeout, --cwd, --env and --resume.
 *
 * Anything else (--json, NODE/ENV, a usage error, no daemon answering, BERTH_DEBUG) it hands
 * to the Node CLI before sending anything, by exec'ing `node dist/src/cli/main.js` with the
 * same arguments, so what the user sees is the same. BERTH_TRACE=1 says which path was taken.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "buf.h"
#include "error-table.h"
#include "json.h"
#include "ws.h"

/* Stdin is read only while less than this is waiting to go to the node. */
#define STDIN_HOLD (1u << 20)
#define CHUNK 65536
#define HANDSHAKE_MS 5000

static int trace_on;
static char **orig_argv;

static void trace(const char *fmt, ...) {
  if (!trace_on) return;
  va_list ap;
  va_start(ap, fmt);
  fputs("berth: trace: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* Runs the Node CLI with the same arguments; nothing has been sent to the node yet. */
static void handover(const char *why) {
  trace("the Node CLI runs this (%s)", why);
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) {
    fprintf(stderr, "berth: cannot find the berth installation (/proc/self/exe: %s)\n", strerror(errno));
    exit(1);
  }
  exe[n] = 0;
  char *slash = strrchr(exe, '/');
  if (slash) *slash = 0;
  char main_js[PATH_MAX + 16];
  snprintf(main_js, sizeof main_js, "%s/../main.js", exe);
  int argc = 0;
  while (orig_argv[argc]) argc++;
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) exit(1);
  args[0] = "node";
  args[1] = main_js;
  for (int i = 1; i < argc; i++) args[i + 1] = orig_argv[i];
  execvp("node", args);
  fprintf(stderr, "berth: cannot run node for the berth CLI: %s\n", strerror(errno));
  exit(1);
}

static int exit_for(const char *code) {
  for (size_t i = 0; i < sizeof ERROR_TABLE / sizeof *ERROR_TABLE; i++)
    if (!strcmp(ERROR_TABLE[i].code, code)) return ERROR_TABLE[i].exit;
  return -1;
}

/* berth's one line, as the Node CLI prints a BerthError, and its exit code. */
static void die(const char *code, const char *message, const char *hint) {
  if (hint && *hint) fprintf(stderr, "berth: %s: %s\n", message, hint);
  else fprintf(stderr, "berth: %s\n", message);
  int e = exit_for(code);
  exit(e < 0 ? 1 : e);
}

/* What BerthError.fromWire makes of an error from the node. */
static void die_wire(const struct wire_error *w, int status) {
  if (w->valid && exit_for(w->code) >= 0) die(w->code, w->message, w->hint);
  char m[64];
  if (status) snprintf(m, sizeof m, "unexpected error response (HTTP %d)", status);
  else snprintf(m, sizeof m, "unexpected error response");
  die("internal", m, NULL);
}

static char target[sizeof(struct sockaddr_un) + 16]; /* unix://PATH, for messages */

static void die_interrupted(void) {
  die("interrupted", "the berth daemon stopped while handling the request",
      "run `berth ls` to see the state; the daemon cleans up half-made work when it starts again");
}

static void die_unreachable(const char *why) {
  char m[sizeof target + 128];
  snprintf(m, sizeof m, "no berth daemon answers at %s (%s)", target, why);
  die("daemon_unreachable", m, "start one with `berth daemon`, or run `berth up`");
}

/* ---- where the node is ---- */

/* path.resolve(p): absolute, with `.`, `..` and repeated slashes gone. */
static int resolve_path(const char *p, char *out, size_t size) {
  char joined[PATH_MAX * 2];
  if (p[0] == '/') snprintf(joined, sizeof joined, "%s", p);
  else {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return -1;
    snprintf(joined, sizeof joined, "%s/%s", cwd, p);
  }
  size_t o = 0;
  out[0] = 0;
  for (char *seg = strtok(joined, "/"); seg; seg = strtok(NULL, "/")) {
    if (!strcmp(seg, ".")) continue;
    if (!strcmp(seg, "..")) {
      while (o > 0 && out[o - 1] != '/') o--;
      if (o > 0) o--;
      out[o] = 0;
      continue;
    }
    size_t n = strlen(seg);
    if (o + 1 + n + 1 > size) return -1;
    out[o++] = '/';
    memcpy(out + o, seg, n);
    o += n;
    out[o] = 0;
  }
  if (o == 0) snprintf(out, size, "/");
  return 0;
}

/* $BERTH_HOME/berth.sock, as src/env/node-config.ts berthHome() finds the home. */
static int socket_path(char *out, size_t size) {
  const char *home = getenv("BERTH_HOME");
  char dflt[PATH_MAX];
  if (!home) {
    const char *h = getenv("HOME");
    if (!h) h = "/root";
    snprintf(dflt, sizeof dflt, "%s%s.berth", h, *h ? "/" : "");
    home = dflt;
  }
  char abs[PATH_MAX];
  if (resolve_path(home, abs, sizeof abs) < 0) return -1;
  int n = snprintf(out, size, "%s%sberth.sock", abs, strcmp(abs, "/") ? "/" : "");
  return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* ---- signals ---- */

static int sigpipe_fds[2] = {-1, -1};

static void on_signal(int sig) {
  int saved = errno;
  unsigned char b = (unsigned char)sig;
  ssize_t ignored = write(sigpipe_fds[1], &b, 1);
  (void)ignored;
  errno = saved;
}

static void catch_signals(void) {
  if (pipe2(sigpipe_fds, O_CLOEXEC | O_NONBLOCK) < 0) {
    perror("berth: pipe");
    exit(1);
  }
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  /* No SA_RESTART: a write to a blocked stdout returns, and the signal still goes out. */
  int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaction(sigs[i], &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

static const char *signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGQUIT: return "SIGQUIT";
    default: return NULL;
  }
}

/* ---- the stream ---- */

struct session {
  int sock;
  int broken;       /* sending failed: only reading is left */
  struct buf out;   /* frames waiting to be sent */
  struct ws_dec dec;
  int done;
  struct exec_final final;
};

static void flush(struct session *s) {
  while (!s->broken && buf_pending(&s->out) > 0) {
    ssize_t w = send(s->sock, s->out.data + s->out.off, buf_pending(&s->out), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) buf_consume(&s->out, (size_t)w);
    else if (w < 0 && errno == EINTR) continue;
    else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    else s->broken = 1;
  }
}

static void send_signal(struct session *s, const char *name) {
  const unsigned char tag = 2;
  ws_frame(&s->out, WS_BINARY, &tag, 1, name, strlen(name));
}

/* Signals caught since the last call become signal messages. */
static void take_signals(struct session *s) {
  unsigned char sigs[64];
  ssize_t n;
  while ((n = read(sigpipe_fds[0], sigs, sizeof sigs)) > 0)
    for (ssize_t i = 0; i < n; i++) {
      const char *name = signal_name(sigs[i]);
      trace("passing %s on to the command", name ? name : "?");
      if (name) send_signal(s, name);
    }
  flush(s);
}

/* A reader that went away (`| head`) ends the command, quietly, as with the Node CLI. */
static void reader_gone(struct session *s) {
  send_signal(s, "SIGPIPE");
  flush(s);
  exit(141);
}

static void write_all(struct session *s, int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    } else if (w < 0 && errno == EINTR) take_signals(s);
    else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      /* An output left non-blocking by whoever shares it: wait for room, and for signals. */
      struct pollfd room[2] = {{fd, POLLOUT, 0}, {sigpipe_fds[0], POLLIN, 0}};
      if (poll(room, 2, -1) > 0 && room[1].revents) take_signals(s);
    } else reader_gone(s);
  }
}

static int on_binary(void *ctx, int tag, const unsigned char *p, size_t n) {
  struct session *s = ctx;
  if (tag == 1) write_all(s, STDOUT_FILENO, p, n);
  else if (tag == 2) write_all(s, STDERR_FILENO, p, n);
  return 0;
}

static int on_text(void *ctx, const char *p, size_t n) {
  struct session *s = ctx;
  json_final(p, n, &s->final);
  if (!s->final.is_json) die("internal", "the node's last message on the exec stream is not JSON", NULL);
  s->done = 1;
  return 1;
}

static int on_ping(void *ctx, const unsigned char *p, size_t n) {
  struct session *s = ctx;
  ws_frame(&s->out, WS_PONG, p, n, NULL, 0);
  return 0;
}

static int on_close(void *ctx) {
  (void)ctx;
  die_interrupted();
  return 1;
}

/* Takes what the node sent; returns 1 once the exec has ended. */
static int receive(struct session *s, const struct ws_sink *sink) {
  unsigned char in[CHUNK];
  ssize_t n = recv(s->sock, in, sizeof in, MSG_DONTWAIT);
  if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
  if (n <= 0) die_interrupted();
  if (ws_feed(&s->dec, in, (size_t)n, sink) < 0) die_interrupted();
  return s->done;
}

static void stream(struct session *s, int use_stdin, const unsigned char *early, size_t nearly) {
  const struct ws_sink sink = {s, on_binary, on_text, on_ping, on_close};
  if (nearly > 0) {
    unsigned char *copy = malloc(nearly);
    if (!copy) exit(1);
    memcpy(copy, early, nearly);
    int r = ws_feed(&s->dec, copy, nearly, &sink);
    free(copy);
    if (r < 0) die_interrupted();
  }
  int stdin_open = use_stdin;
  while (!s->done) {
    struct pollfd fds[3] = {
        {s->sock, (short)(POLLIN | (buf_pending(&s->out) && !s->broken ? POLLOUT : 0)), 0},
        {sigpipe_fds[0], POLLIN, 0},
        {stdin_open && buf_pending(&s->out) < STDIN_HOLD ? STDIN_FILENO : -1, POLLIN, 0},
    };
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      die("internal", strerror(errno), NULL);
    }
    if (fds[1].revents) take_signals(s);
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR) && receive(s, &sink)) break;
    if (fds[2].revents) {
      unsigned char chunk[CHUNK];
      ssize_t n = fds[2].revents & POLLNVAL ? 0 : read(STDIN_FILENO, chunk, sizeof chunk);
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      const unsigned char tag = n > 0 ? 0 : 1;
      if (n > 0) ws_frame(&s->out, WS_BINARY, &tag, 1, chunk, (size_t)n);
      else {
        ws_frame(&s->out, WS_BINARY, &tag, 1, NULL, 0); /* stdin ended (or failed) */
        stdin_open = 0;
      }
    }
    flush(s);
  }
}

/* ---- the handshake ---- */

static long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* Waits for `events` on the socket until the handshake's deadline; exits with Node's message when it passes. */
static void await_socket(int sock, short events, long deadline) {
  for (;;) {
    long left = deadline - now_ms();
    if (left <= 0) {
      char m[sizeof target + 64];
      snprintf(m, sizeof m, "no answer from %s in time", target);
      die("daemon_unreachable", m, "check that the node is up and reachable");
    }
    struct pollfd p = {sock, events, 0};
    int r = poll(&p, 1, (int)left);
    if (r > 0) return;
    if (r < 0 && errno != EINTR) die_unreachable(strerror(errno));
  }
}

static void send_all(int sock, const char *p, size_t n, long deadline) {
  while (n > 0) {
    ssize_t w = send(sock, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) p += w, n -= (size_t)w;
    else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) await_socket(sock, POLLOUT, deadline);
    else die_unreachable("ECONNRESET");
  }
}

/* The value of header `name` in a response head, NUL-terminated into `out`, or NULL. */
static const char *header(const char *head, const char *name, char *out, size_t size) {
  size_t n = strlen(name);
  for (const char *line = strstr(head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
    const char *h = line + 2;
    if (strncasecmp(h, name, n) || h[n] != ':') continue;
    h += n + 1;
    while (*h == ' ' || *h == '\t') h++;
    size_t len = strcspn(h, "\r\n");
    while (len > 0 && (h[len - 1] == ' ' || h[len - 1] == '\t')) len--;
    if (len >= size) len = size - 1;
    memcpy(out, h, len);
    out[len] = 0;
    return out;
  }
  return NULL;
}

/* A refused upgrade: the node's JSON error in the body, as the Node CLI reads it. */
static void refused(int sock, struct buf *in, size_t head_len, int status, long deadline) {
  char cl[32];
  long want = header((const char *)in->data, "content-length", cl, sizeof cl) ? atol(cl) : -1;
  for (;;) {
    size_t body = in->len - head_len;
    if ((want >= 0 && body >= (size_t)want) || body > (1u << 20)) break;
    await_socket(sock, POLLIN, deadline);
    ssize_t n = recv(sock, buf_reserve(in, CHUNK), CHUNK, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;
    in->len += (size_t)n;
  }
  size_t body = in->len - head_len;
  if (want >= 0 && body > (size_t)want) body = (size_t)want;
  struct wire_error w;
  if (json_error_body((const char *)in->data + head_len, body, &w) < 0) {
    char m[64];
    snprintf(m, sizeof m, "node refused the stream (HTTP %d)", status);
    die("internal", m, NULL);
  }
  die_wire(&w, status);
}

/*
 * Upgrades the connection, with `first` (the exec request frame) sent right behind the upgrade
 * request: the node reads it once the upgrade is done, and drops it with the connection when
 * the upgrade is refused, so no round trip is spent waiting in between. Returns how much of
 * `in` past the response head is stream already.
 */
static size_t handshake(int sock, const char *path, const struct buf *first, struct buf *in) {
  long deadline = now_ms() + HANDSHAKE_MS;
  char key[25], accept[29], got[64];
  ws_key(key);
  ws_accept(key, accept);
  struct buf req = {0};
  buf_str(&req, "GET ");
  buf_str(&req, path);
  buf_str(&req, " HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
  buf_str(&req, key);
  buf_str(&req, "\r\n\r\n");
  buf_add(&req, first->data + first->off, buf_pending(first));
  send_all(sock, (const char *)req.data, req.len, deadline);
  free(req.data);
  char *end;
  for (;;) {
    buf_add(in, "", 1); /* a NUL after what was read, for the string functions */
    in->len--;
    end = strstr((char *)in->data, "\r\n\r\n");
    if (end) break;
    if (in->len > 16384) die_unreachable("Invalid HTTP response");
    await_socket(sock, POLLIN, deadline);
    ssize_t n = recv(sock, buf_reserve(in, 4096), 4096 - 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) die_unreachable(n == 0 ? "ECONNRESET" : strerror(errno));
    in->len += (size_t)n;
  }
  size_t head_len = (size_t)(end + 4 - (char *)in->data);
  int status = 0;
  if (sscanf((const char *)in->data, "HTTP/1.%*d %d", &status) != 1) die_unreachable("Invalid HTTP response");
  if (status != 101) refused(sock, in, head_len, status, deadline);
  if (!header((const char *)in->data, "sec-websocket-accept", got, sizeof got) || strcmp(got, accept))
    die_unreachable("Invalid Sec-WebSocket-Accept header");
  return head_len;
}

int main(int argc, char **argv) {
  orig_argv = argv;
  const char *t = getenv("BERTH_TRACE");
  trace_on = t && *t && strcmp(t, "0");
  if (argc < 2 || strcmp(argv[1], "exec")) handover("not an exec");
  const char *debug = getenv("BERTH_DEBUG");
  if (debug && *debug) handover("BERTH_DEBUG is set");
  struct exec_args a;
  const char *why = exec_args(argc - 2, argv + 2, &a);
  if (why) handover(why);

  char sock_path[sizeof(struct sockaddr_un)];
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (socket_path(sock_path, sizeof addr.sun_path) < 0) handover("a BERTH_HOME too long for a unix socket");
  memcpy(addr.sun_path, sock_path, strlen(sock_path) + 1);
  snprintf(target, sizeof target, "unix://%s", sock_path);
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0) handover("no daemon answers on the socket");
  trace("native exec client, pid %d, %s", (int)getpid(), target);

  catch_signals();
  struct buf path = {0}, in = {0}, request = {0};
  exec_path(a.name, &path);
  buf_add(&path, "", 1);
  int use_stdin = !isatty(STDIN_FILENO);
  exec_request(&a, use_stdin, &request);
  struct buf first = {0};
  ws_frame(&first, WS_TEXT, request.data, request.len, NULL, 0);
  size_t head_len = handshake(sock, (const char *)path.data, &first, &in);

  struct session s = {.sock = sock};
  s.dec.tag = -1;
  take_signals(&s); /* any caught during the handshake follow the request */
  stream(&s, use_stdin, in.data + head_len, in.len - head_len);

  const unsigned char bye[2] = {0x03, 0xe8}; /* 1000: normal closure */
  ws_frame(&s.out, WS_CLOSE, bye, 2, NULL, 0);
  flush(&s);
  if (!s.final.is_exit) die_wire(&s.final.error, 0);
  if (s.final.timed_out) fprintf(stderr, "berth: command timed out after %ss and was killed\n", a.timeout ? a.timeout : "undefined");
  return (int)(s.final.exit_code & 0xff);
}
