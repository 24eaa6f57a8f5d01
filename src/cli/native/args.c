/* `berth exec` arguments and the exec request they make: see args.h. */
#include "args.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/*
 * The --timeout values whose JavaScript Number prints back as the same text (the timed-out
 * message shows it): plain decimals, no leading or trailing zeros, at most 15 digits, and
 * not so small that JavaScript would print an exponent. Others go to the Node CLI.
 */
static int plain_timeout(const char *s) {
  size_t digits = 0, lead = 0;
  const char *p = s;
  if (*p == '0') {
    p++;
    if (*p != '.') return 0;
  } else {
    if (*p < '1' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++, digits++;
    if (digits > 9) return 0;
    if (!*p) return 1;
    if (*p != '.') return 0;
  }
  p++;
  const char *frac = p;
  while (*p == '0' && digits == 0) p++, lead++;
  while (*p >= '0' && *p <= '9') p++;
  size_t n = (size_t)(p - frac);
  if (*p || n == 0 || frac[n - 1] == '0' || lead > 5) return 0;
  return digits + n - (digits == 0 ? lead : 0) <= 15;
}

/* Math.round: to the nearest integer, halves upwards. */
static double js_round(double x) {
  double r = floor(x);
  return x - r >= 0.5 ? r + 1 : r;
}

static int is_value_flag(const char *key) { return !strcmp(key, "timeout") || !strcmp(key, "cwd") || !strcmp(key, "env"); }

const char *exec_args(int argc, char **argv, struct exec_args *a) {
  memset(a, 0, sizeof *a);
  static char *positionals[4096];
  int npos = 0;
  char **rest = NULL;
  int nrest = 0;
  a->env = calloc((size_t)argc + 1, sizeof *a->env);
  if (!a->env) return "out of memory";
  for (int i = 0; i < argc; i++) {
    char *arg = argv[i];
    if (!strcmp(arg, "--")) {
      rest = argv + i + 1;
      nrest = argc - i - 1;
      break;
    }
    if (strncmp(arg, "--", 2) != 0) {
      if (npos == (int)(sizeof positionals / sizeof *positionals)) return "too many arguments";
      positionals[npos++] = arg;
      continue;
    }
    const char *eq = strchr(arg, '=');
    size_t keylen = eq && eq > arg ? (size_t)(eq - arg - 2) : strlen(arg + 2);
    char key[16];
    if (keylen >= sizeof key) return "an option the native client does not take";
    memcpy(key, arg + 2, keylen);
    key[keylen] = 0;
    if (!strcmp(key, "json")) return "--json";
    if (!strcmp(key, "resume")) {
      if (eq) return "--resume with a value";
      a->resume = 1;
    } else if (is_value_flag(key)) {
      const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
      if (!v) return "an option without its value";
      if (!strcmp(key, "timeout")) a->timeout = v;
      else if (!strcmp(key, "cwd")) a->cwd = v;
      else a->env[a->nenv++] = v;
    } else return "an option the native client does not take";
  }
  if (npos == 0 || positionals[0][0] == 0) return "no environment name";
  a->name = positionals[0];
  if (strchr(a->name, '/')) return "a NODE/ENV name";
  if (nrest > 0) a->cmd = rest, a->ncmd = nrest;
  else a->cmd = positionals + 1, a->ncmd = npos - 1;
  if (a->ncmd == 0) return "no command";
  for (int i = 0; i < a->nenv; i++) {
    const char *e = strchr(a->env[i], '=');
    if (!e || e == a->env[i]) return "an --env without KEY=";
    if (!strncmp(a->env[i], "__proto__=", 10)) return "an --env key JavaScript treats specially";
  }
  if (a->timeout) {
    if (!plain_timeout(a->timeout)) return "a --timeout that is not a plain decimal";
    a->timeout_ms = js_round(strtod(a->timeout, NULL) * 1000);
  }
  /* Node reads arguments as UTF-8 and replaces what is not: only well-formed text is sent from here. */
  if (!utf8_valid(a->name) || (a->cwd && !utf8_valid(a->cwd))) return "an argument that is not UTF-8";
  for (int i = 0; i < a->ncmd; i++)
    if (!utf8_valid(a->cmd[i])) return "an argument that is not UTF-8";
  for (int i = 0; i < a->nenv; i++)
    if (!utf8_valid(a->env[i])) return "an argument that is not UTF-8";
  return NULL;
}

/* A key JavaScript orders first, by value, in an object: a canonical array index. */
static int array_index(const char *k, size_t n, double *v) {
  if (n == 0 || n > 10 || (n > 1 && k[0] == '0')) return 0;
  double x = 0;
  for (size_t i = 0; i < n; i++) {
    if (k[i] < '0' || k[i] > '9') return 0;
    x = x * 10 + (k[i] - '0');
  }
  *v = x;
  return x < 4294967295.0;
}

struct env_key {
  const char *kv;  /* the first KEY=VALUE with this key: its place in the object */
  const char *val; /* the value of the last */
  size_t keylen;
  double index;
  int is_index;
};

static int by_index(const void *x, const void *y) {
  const struct env_key *a = x, *b = y;
  return a->index < b->index ? -1 : a->index > b->index;
}

static void key_string(struct buf *b, const char *k, size_t n) {
  char *s = strndup(k, n);
  if (!s) {
    fputs("berth: out of memory\n", stderr);
    exit(1);
  }
  json_string(b, s);
  free(s);
}

/* The --env object as JSON.stringify writes it: array-index keys first, then first-set order, last value wins. */
static void env_object(const struct exec_args *a, struct buf *out) {
  struct env_key *keys = calloc((size_t)a->nenv, sizeof *keys);
  if (!keys) {
    fputs("berth: out of memory\n", stderr);
    exit(1);
  }
  int n = 0;
  for (int i = 0; i < a->nenv; i++) {
    const char *kv = a->env[i], *eq = strchr(kv, '=');
    size_t kl = (size_t)(eq - kv);
    int j = 0;
    while (j < n && !(keys[j].keylen == kl && !memcmp(keys[j].kv, kv, kl))) j++;
    if (j == n) {
      keys[n].kv = kv;
      keys[n].keylen = kl;
      keys[n].is_index = array_index(kv, kl, &keys[n].index);
      n++;
    }
    keys[j].val = eq + 1;
  }
  struct env_key *ordered = calloc((size_t)n, sizeof *ordered);
  if (!ordered) {
    fputs("berth: out of memory\n", stderr);
    exit(1);
  }
  int m = 0;
  for (int i = 0; i < n; i++)
    if (keys[i].is_index) ordered[m++] = keys[i];
  qsort(ordered, (size_t)m, sizeof *ordered, by_index);
  for (int i = 0; i < n; i++)
    if (!keys[i].is_index) ordered[m++] = keys[i];
  buf_add(out, "{", 1);
  for (int i = 0; i < n; i++) {
    if (i) buf_add(out, ",", 1);
    key_string(out, ordered[i].kv, ordered[i].keylen);
    buf_add(out, ":", 1);
    json_string(out, ordered[i].val);
  }
  buf_add(out, "}", 1);
  free(ordered);
  free(keys);
}

void exec_request(const struct exec_args *a, int interactive_stdin, struct buf *out) {
  buf_str(out, "{\"argv\":[");
  for (int i = 0; i < a->ncmd; i++) {
    if (i) buf_add(out, ",", 1);
    json_string(out, a->cmd[i]);
  }
  buf_add(out, "]", 1);
  if (a->cwd) {
    buf_str(out, ",\"cwd\":");
    json_string(out, a->cwd);
  }
  if (a->nenv) {
    buf_str(out, ",\"env\":");
    env_object(a, out);
  }
  if (a->timeout) {
    char n[32];
    snprintf(n, sizeof n, ",\"timeoutMs\":%.0f", a->timeout_ms);
    buf_str(out, n);
  }
  if (a->resume) buf_str(out, ",\"resume\":true");
  buf_str(out, interactive_stdin ? ",\"interactiveStdin\":true}" : ",\"interactiveStdin\":false}");
}

void exec_path(const char *name, struct buf *out) {
  static const char hex[] = "0123456789ABCDEF";
  buf_str(out, "/v1/envs/");
  for (const unsigned char *s = (const unsigned char *)name; *s; s++) {
    unsigned char c = *s;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-_.!~*'()", c)) buf_add(out, &c, 1);
    else {
      char pct[3] = {'%', hex[c >> 4], hex[c & 15]};
      buf_add(out, pct, 3);
    }
  }
  buf_str(out, "/exec/ws");
}
