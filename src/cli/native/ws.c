/* The client side of WebSocket (RFC 6455) that the exec stream needs: see ws.h. */
#define _GNU_SOURCE
#include "ws.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

void ws_random(void *p, size_t n) {
  unsigned char *q = p;
  while (n > 0) {
    ssize_t r = getrandom(q, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    q += r;
    n -= (size_t)r;
  }
  if (n == 0) return;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  while (fd >= 0 && n > 0) {
    ssize_t r = read(fd, q, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    q += r;
    n -= (size_t)r;
  }
  if (fd >= 0) close(fd);
  if (n > 0) {
    fputs("berth: no source of random bytes for the WebSocket key\n", stderr);
    _exit(1);
  }
}

/* ---- SHA-1 (FIPS 180-4), only for the handshake's accept value ---- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const unsigned char *blk) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)blk[4 * i] << 24 | (uint32_t)blk[4 * i + 1] << 16 | (uint32_t)blk[4 * i + 2] << 8 | blk[4 * i + 3];
  for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
    else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
    else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
    else f = b ^ c ^ d, k = 0xCA62C1D6;
    uint32_t t = rol(a, 5) + f + e + k + w[i];
    e = d, d = c, c = rol(b, 30), b = a, a = t;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1(const unsigned char *p, size_t n, unsigned char out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  size_t i = 0;
  for (; i + 64 <= n; i += 64) sha1_block(h, p + i);
  unsigned char tail[128] = {0};
  size_t rest = n - i;
  memcpy(tail, p + i, rest);
  tail[rest] = 0x80;
  size_t total = rest + 1 + 8 <= 64 ? 64 : 128;
  uint64_t bits = (uint64_t)n * 8;
  for (int j = 0; j < 8; j++) tail[total - 1 - j] = (unsigned char)(bits >> (8 * j));
  sha1_block(h, tail);
  if (total == 128) sha1_block(h, tail + 64);
  for (int j = 0; j < 5; j++) {
    out[4 * j] = (unsigned char)(h[j] >> 24);
    out[4 * j + 1] = (unsigned char)(h[j] >> 16);
    out[4 * j + 2] = (unsigned char)(h[j] >> 8);
    out[4 * j + 3] = (unsigned char)h[j];
  }
}

static void base64(const unsigned char *p, size_t n, char *out) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    out[o++] = abc[v >> 18 & 63];
    out[o++] = abc[v >> 12 & 63];
    out[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
    out[o++] = i + 2 < n ? abc[v & 63] : '=';
  }
  out[o] = 0;
}

void ws_key(char key[25]) {
  unsigned char nonce[16];
  ws_random(nonce, sizeof nonce);
  base64(nonce, sizeof nonce, key);
}

void ws_accept(const char *key, char accept[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char text[64], digest[20];
  size_t k = strlen(key);
  if (k > sizeof text - (sizeof guid - 1)) k = sizeof text - (sizeof guid - 1);
  memcpy(text, key, k);
  memcpy(text + k, guid, sizeof guid - 1);
  sha1(text, k + sizeof guid - 1, digest);
  base64(digest, sizeof digest, accept);
}

/* ---- frames out ---- */

/* Masking keys come from a pool refilled in one call, not one system call per frame. */
static void mask_key(unsigned char key[4]) {
  static unsigned char pool[256];
  static size_t used = sizeof pool;
  if (used + 4 > sizeof pool) {
    ws_random(pool, sizeof pool);
    used = 0;
  }
  memcpy(key, pool + used, 4);
  used += 4;
}

void ws_frame(struct buf *out, int opcode, const void *head, size_t headlen, const void *body, size_t bodylen) {
  size_t n = headlen + bodylen;
  unsigned char *p = buf_reserve(out, 14 + n);
  size_t h = 0;
  p[h++] = (unsigned char)(0x80 | opcode);
  if (n < 126) p[h++] = (unsigned char)(0x80 | n);
  else if (n < 65536) {
    p[h++] = 0x80 | 126;
    p[h++] = (unsigned char)(n >> 8);
    p[h++] = (unsigned char)n;
  } else {
    p[h++] = 0x80 | 127;
    for (int j = 7; j >= 0; j--) p[h++] = (unsigned char)((uint64_t)n >> (8 * j));
  }
  unsigned char key[4];
  mask_key(key);
  memcpy(p + h, key, 4);
  h += 4;
  const unsigned char *a = head, *b = body;
  for (size_t i = 0; i < headlen; i++) p[h + i] = a[i] ^ key[i & 3];
  for (size_t i = 0; i < bodylen; i++) p[h + headlen + i] = b[i] ^ key[(headlen + i) & 3];
  out->len += h + n;
}

/* ---- frames in ---- */

/* Bytes the header needs, once its first two are known. */
static size_t header_size(const unsigned char *hdr) {
  size_t len7 = hdr[1] & 0x7f;
  return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (hdr[1] & 0x80 ? 4 : 0);
}

static int start_frame(struct ws_dec *d) {
  const unsigned char *h = d->hdr;
  d->fin = h[0] >> 7;
  d->opcode = h[0] & 0x0f;
  d->masked = h[1] >> 7;
  if (h[0] & 0x70) return -1; /* no extension was negotiated */
  size_t len7 = h[1] & 0x7f, at = 2;
  uint64_t len = len7;
  if (len7 == 126) len = (uint64_t)h[2] << 8 | h[3], at = 4;
  else if (len7 == 127) {
    len = 0;
    for (int j = 0; j < 8; j++) len = len << 8 | h[2 + j];
    at = 10;
  }
  if (d->masked) memcpy(d->mask, h + at, 4);
  d->remaining = len;
  d->pos = 0;
  if (d->opcode >= 8) {
    if (!d->fin || len > sizeof d->ctl || (d->opcode != WS_CLOSE && d->opcode != WS_PING && d->opcode != WS_PONG)) return -1;
    d->ctllen = 0;
  } else if (d->opcode == WS_CONT) {
    if (!d->msg) return -1;
  } else if (d->opcode == WS_TEXT || d->opcode == WS_BINARY) {
    if (d->msg) return -1;
    d->msg = d->opcode;
    d->tag = -1;
    d->text.len = d->text.off = 0;
  } else return -1;
  d->in_payload = 1;
  return 0;
}

/* Payload bytes of the current frame (unmasked in place). */
static int payload(struct ws_dec *d, unsigned char *p, size_t n, const struct ws_sink *s) {
  if (d->masked)
    for (size_t i = 0; i < n; i++) p[i] ^= d->mask[(d->pos + i) & 3];
  d->pos += n;
  if (d->opcode >= 8) {
    memcpy(d->ctl + d->ctllen, p, n);
    d->ctllen += n;
    return 0;
  }
  if (d->msg == WS_TEXT) {
    if (buf_pending(&d->text) + n > WS_MAX_TEXT) return -1;
    buf_add(&d->text, p, n);
    return 0;
  }
  if (n > 0 && d->tag < 0) {
    d->tag = p[0];
    p++, n--;
  }
  return n > 0 ? s->binary(s->ctx, d->tag, p, n) : 0;
}

static int end_frame(struct ws_dec *d, const struct ws_sink *s) {
  d->in_payload = 0;
  d->hdrlen = 0;
  switch (d->opcode) {
    case WS_PING: return s->ping(s->ctx, d->ctl, d->ctllen);
    case WS_PONG: return 0;
    case WS_CLOSE: return s->close(s->ctx);
    default: break;
  }
  if (!d->fin) return 0;
  int kind = d->msg;
  d->msg = 0;
  if (kind == WS_TEXT) return s->text(s->ctx, (const char *)d->text.data + d->text.off, buf_pending(&d->text));
  return 0;
}

int ws_feed(struct ws_dec *d, unsigned char *p, size_t n, const struct ws_sink *s) {
  while (n > 0 || (d->in_payload && d->remaining == 0)) {
    if (!d->in_payload) {
      size_t want = d->hdrlen < 2 ? 2 : header_size(d->hdr);
      size_t take = want - d->hdrlen < n ? want - d->hdrlen : n;
      memcpy(d->hdr + d->hdrlen, p, take);
      d->hdrlen += take, p += take, n -= take;
      if (d->hdrlen < 2 || d->hdrlen < header_size(d->hdr)) continue;
      if (start_frame(d) < 0) return -1;
      continue;
    }
    size_t take = d->remaining < n ? (size_t)d->remaining : n;
    int r = payload(d, p, take, s);
    if (r) return r;
    p += take, n -= take;
    d->remaining -= take;
    if (d->remaining == 0) {
      r = end_frame(d, s);
      if (r) return r;
    }
  }
  return 0;
}
