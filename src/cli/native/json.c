/* The JSON the native exec client writes and reads: see json.h. */
#include "json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int utf8_valid(const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  while (*s) {
    unsigned c = *s;
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
      s++;
      continue;
    } else if ((c & 0xe0) == 0xc0) n = 1, v = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) n = 2, v = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) n = 3, v = c & 0x07, min = 0x10000;
    else return 0;
    for (size_t i = 1; i <= n; i++) {
      if ((s[i] & 0xc0) != 0x80) return 0;
      v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    s += n + 1;
  }
  return 1;
}

void json_string(struct buf *b, const char *str) {
  static const char hex[] = "0123456789abcdef";
  buf_add(b, "\"", 1);
  for (const unsigned char *s = (const unsigned char *)str; *s; s++) {
    unsigned char c = *s;
    const char *esc = NULL;
    switch (c) {
      case '"': esc = "\\\""; break;
      case '\\': esc = "\\\\"; break;
      case '\b': esc = "\\b"; break;
      case '\f': esc = "\\f"; break;
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\t': esc = "\\t"; break;
      default: break;
    }
    if (esc) buf_str(b, esc);
    else if (c < 0x20) {
      char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      buf_add(b, u, sizeof u);
    } else buf_add(b, &c, 1);
  }
  buf_add(b, "\"", 1);
}

/* ---- reading ---- */

struct jr {
  const char *p, *end;
  int depth;
};

enum { J_BAD, J_NULL, J_FALSE, J_TRUE, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT };

struct jv {
  int type;
  double num;
  struct buf str; /* NUL-terminated, for J_STRING */
};

static void ws(struct jr *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int eat(struct jr *r, char c) {
  ws(r);
  if (r->p < r->end && *r->p == c) {
    r->p++;
    return 1;
  }
  return 0;
}

static void put_utf8(struct buf *b, uint32_t v) {
  unsigned char u[4];
  size_t n;
  if (v < 0x80) u[0] = (unsigned char)v, n = 1;
  else if (v < 0x800) u[0] = (unsigned char)(0xc0 | v >> 6), u[1] = (unsigned char)(0x80 | (v & 63)), n = 2;
  else if (v < 0x10000)
    u[0] = (unsigned char)(0xe0 | v >> 12), u[1] = (unsigned char)(0x80 | (v >> 6 & 63)), u[2] = (unsigned char)(0x80 | (v & 63)), n = 3;
  else
    u[0] = (unsigned char)(0xf0 | v >> 18), u[1] = (unsigned char)(0x80 | (v >> 12 & 63)), u[2] = (unsigned char)(0x80 | (v >> 6 & 63)),
    u[3] = (unsigned char)(0x80 | (v & 63)), n = 4;
  buf_add(b, u, n);
}

static int hex4(struct jr *r, uint32_t *v) {
  if (r->end - r->p < 4) return 0;
  *v = 0;
  for (int i = 0; i < 4; i++) {
    char c = r->p[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return 0;
    *v = *v << 4 | (uint32_t)d;
  }
  r->p += 4;
  return 1;
}

/* A string (after its opening quote), decoded to UTF-8; a lone surrogate becomes U+FFFD, as Node writes it. */
static int string(struct jr *r, struct buf *out) {
  while (r->p < r->end) {
    unsigned char c = (unsigned char)*r->p++;
    if (c == '"') {
      buf_add(out, "", 1);
      out->len--;
      return 1;
    }
    if (c < 0x20) return 0;
    if (c != '\\') {
      buf_add(out, &c, 1);
      continue;
    }
    if (r->p >= r->end) return 0;
    char e = *r->p++;
    uint32_t v;
    switch (e) {
      case '"': case '\\': case '/': buf_add(out, &e, 1); break;
      case 'b': buf_add(out, "\b", 1); break;
      case 'f': buf_add(out, "\f", 1); break;
      case 'n': buf_add(out, "\n", 1); break;
      case 'r': buf_add(out, "\r", 1); break;
      case 't': buf_add(out, "\t", 1); break;
      case 'u':
        if (!hex4(r, &v)) return 0;
        if (v >= 0xd800 && v <= 0xdbff && r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u') {
          const char *save = r->p;
          uint32_t lo;
          r->p += 2;
          if (hex4(r, &lo) && lo >= 0xdc00 && lo <= 0xdfff) v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
          else r->p = save;
        }
        put_utf8(out, v >= 0xd800 && v <= 0xdfff ? 0xfffd : v);
        break;
      default: return 0;
    }
  }
  return 0;
}

static int value(struct jr *r, struct jv *v);

static int literal(struct jr *r, const char *word, int type, struct jv *v) {
  size_t n = strlen(word);
  if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) return 0;
  r->p += n;
  v->type = type;
  return 1;
}

static int number(struct jr *r, struct jv *v) {
  const char *s = r->p;
  if (s < r->end && *s == '-') s++;
  if (s >= r->end || *s < '0' || *s > '9') return 0;
  if (*s == '0') s++;
  else
    while (s < r->end && *s >= '0' && *s <= '9') s++;
  if (s < r->end && *s == '.') {
    s++;
    if (s >= r->end || *s < '0' || *s > '9') return 0;
    while (s < r->end && *s >= '0' && *s <= '9') s++;
  }
  if (s < r->end && (*s == 'e' || *s == 'E')) {
    s++;
    if (s < r->end && (*s == '+' || *s == '-')) s++;
    if (s >= r->end || *s < '0' || *s > '9') return 0;
    while (s < r->end && *s >= '0' && *s <= '9') s++;
  }
  char tmp[64];
  size_t n = (size_t)(s - r->p);
  if (n >= sizeof tmp) n = sizeof tmp - 1; /* only integers this small matter here */
  memcpy(tmp, r->p, n);
  tmp[n] = 0;
  v->num = strtod(tmp, NULL);
  v->type = J_NUMBER;
  r->p = s;
  return 1;
}

/* Calls `member` for each key of an object (after its `{`); the callback reads the value. */
static int object(struct jr *r, int (*member)(struct jr *, const char *, void *), void *ctx) {
  if (++r->depth > 64) return 0;
  if (eat(r, '}')) return r->depth--, 1;
  for (;;) {
    struct buf key = {0};
    if (!eat(r, '"') || !string(r, &key) || !eat(r, ':')) return free(key.data), 0;
    int ok = member(r, key.data ? (const char *)key.data : "", ctx);
    free(key.data);
    if (!ok) return 0;
    if (eat(r, ',')) continue;
    if (eat(r, '}')) return r->depth--, 1;
    return 0;
  }
}

static int skip_member(struct jr *r, const char *key, void *ctx) {
  (void)key, (void)ctx;
  struct jv v = {0};
  int ok = value(r, &v);
  free(v.str.data);
  return ok;
}

static int value(struct jr *r, struct jv *v) {
  ws(r);
  if (r->p >= r->end) return 0;
  char c = *r->p;
  if (c == '{') {
    r->p++;
    v->type = J_OBJECT;
    return object(r, skip_member, NULL);
  }
  if (c == '[') {
    r->p++;
    v->type = J_ARRAY;
    if (++r->depth > 64) return 0;
    if (eat(r, ']')) return r->depth--, 1;
    for (;;) {
      struct jv item = {0};
      int ok = value(r, &item);
      free(item.str.data);
      if (!ok) return 0;
      if (eat(r, ',')) continue;
      if (eat(r, ']')) return r->depth--, 1;
      return 0;
    }
  }
  if (c == '"') {
    r->p++;
    v->type = J_STRING;
    return string(r, &v->str);
  }
  if (c == 't') return literal(r, "true", J_TRUE, v);
  if (c == 'f') return literal(r, "false", J_FALSE, v);
  if (c == 'n') return literal(r, "null", J_NULL, v);
  return number(r, v);
}

/* JavaScript's truthiness, for `if (msg.exit)` and `if (r.timedOut)`. */
static int truthy(const struct jv *v) {
  switch (v->type) {
    case J_TRUE: case J_ARRAY: case J_OBJECT: return 1;
    case J_NUMBER: return v->num != 0 && v->num == v->num;
    case J_STRING: return buf_pending(&v->str) > 0;
    default: return 0;
  }
}

/* Reads a value into `*dst` as a malloc'd string when it is one, else NULL. */
static int string_field(struct jr *r, char **dst) {
  struct jv v = {0};
  if (!value(r, &v)) return free(v.str.data), 0;
  free(*dst);
  *dst = NULL;
  if (v.type == J_STRING) *dst = v.str.data ? (char *)v.str.data : strdup("");
  else free(v.str.data);
  return 1;
}

static int error_member(struct jr *r, const char *key, void *ctx) {
  struct wire_error *e = ctx;
  if (!strcmp(key, "code")) return string_field(r, &e->code);
  if (!strcmp(key, "message")) return string_field(r, &e->message);
  if (!strcmp(key, "hint")) return string_field(r, &e->hint);
  return skip_member(r, key, NULL);
}

/* The value of an `error` key: an object read into `e`, or anything else (then not valid). */
static int error_value(struct jr *r, struct wire_error *e) {
  free(e->code), free(e->message), free(e->hint);
  memset(e, 0, sizeof *e);
  ws(r);
  if (r->p < r->end && *r->p == '{') {
    r->p++;
    if (!object(r, error_member, e)) return 0;
  } else if (!skip_member(r, "", NULL)) return 0;
  e->valid = e->code != NULL && e->message != NULL;
  return 1;
}

static int exit_member(struct jr *r, const char *key, void *ctx) {
  struct exec_final *f = ctx;
  struct jv v = {0};
  int ok = value(r, &v);
  free(v.str.data);
  if (!ok) return 0;
  if (!strcmp(key, "exitCode")) f->exit_code = v.type == J_NUMBER && v.num > -1e9 && v.num < 1e9 ? (long)v.num : 0;
  else if (!strcmp(key, "timedOut")) f->timed_out = truthy(&v);
  return 1;
}

static int final_member(struct jr *r, const char *key, void *ctx) {
  struct exec_final *f = ctx;
  if (!strcmp(key, "error")) return error_value(r, &f->error);
  if (strcmp(key, "exit") != 0) return skip_member(r, key, NULL);
  f->exit_code = 0;
  f->timed_out = 0;
  ws(r);
  if (r->p < r->end && *r->p == '{') {
    r->p++;
    f->is_exit = 1;
    return object(r, exit_member, f);
  }
  struct jv v = {0};
  int ok = value(r, &v);
  free(v.str.data);
  f->is_exit = truthy(&v);
  return ok;
}

void json_final(const char *p, size_t n, struct exec_final *out) {
  memset(out, 0, sizeof *out);
  struct jr r = {p, p + n, 0};
  ws(&r);
  int ok;
  if (r.p < r.end && *r.p == '{') {
    r.p++;
    ok = object(&r, final_member, out);
  } else {
    struct jv v = {0};
    ok = value(&r, &v);
    free(v.str.data);
  }
  ws(&r);
  out->is_json = ok && r.p == r.end;
}

int json_error_body(const char *p, size_t n, struct wire_error *out) {
  struct exec_final f;
  json_final(p, n, &f);
  *out = f.error;
  if (!f.is_json) return -1;
  /* `JSON.parse(body).error` throws for a body of `null`: the Node CLI then says the node refused. */
  struct jr r = {p, p + n, 0};
  ws(&r);
  if (r.end - r.p >= 4 && !memcmp(r.p, "null", 4)) return -1;
  return 0;
}
