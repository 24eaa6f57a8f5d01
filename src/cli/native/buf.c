/* A growable byte buffer, the one container the native exec client needs. */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned char *buf_reserve(struct buf *b, size_t more) {
  if (b->off > 0 && b->off == b->len) b->off = b->len = 0;
  if (b->len + more <= b->cap) return b->data + b->len;
  if (b->off > 0) {
    memmove(b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
    if (b->len + more <= b->cap) return b->data + b->len;
  }
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more) cap *= 2;
  unsigned char *d = realloc(b->data, cap);
  if (!d) {
    fputs("berth: out of memory\n", stderr);
    exit(1);
  }
  b->data = d;
  b->cap = cap;
  return b->data + b->len;
}

void buf_add(struct buf *b, const void *p, size_t n) {
  if (n == 0) return;
  memcpy(buf_reserve(b, n), p, n);
  b->len += n;
}

void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

void buf_consume(struct buf *b, size_t n) {
  b->off += n;
  if (b->off >= b->len) b->off = b->len = 0;
}

size_t buf_pending(const struct buf *b) { return b->len - b->off; }
