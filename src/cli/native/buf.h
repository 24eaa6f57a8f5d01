/* A growable byte buffer, the one container the native exec client needs. */
#ifndef BERTH_BUF_H
#define BERTH_BUF_H

#include <stddef.h>

struct buf {
  unsigned char *data;
  size_t len; /* bytes written: data[0..len) */
  size_t off; /* bytes at the front already consumed: data[off..len) is held */
  size_t cap;
};

/* Room for `more` bytes after the held ones; exits with a one-line error when memory runs out. */
unsigned char *buf_reserve(struct buf *b, size_t more);
void buf_add(struct buf *b, const void *p, size_t n);
void buf_str(struct buf *b, const char *s);
void buf_consume(struct buf *b, size_t n);
/* Bytes held and not yet consumed. */
size_t buf_pending(const struct buf *b);

#endif
