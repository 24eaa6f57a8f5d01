/*
 * The client side of WebSocket (RFC 6455) that the exec stream needs: the handshake key and
 * its expected answer, masked frames out, and a decoder for the server's frames that hands on
 * binary messages piece by piece as they arrive (fragmented or not) and text messages whole.
 */
#ifndef BERTH_WS_H
#define BERTH_WS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum { WS_CONT = 0, WS_TEXT = 1, WS_BINARY = 2, WS_CLOSE = 8, WS_PING = 9, WS_PONG = 10 };

/* Fills `p` with unpredictable bytes (getrandom, else /dev/urandom). */
void ws_random(void *p, size_t n);

/* A fresh Sec-WebSocket-Key (24 characters and a NUL). */
void ws_key(char key[25]);

/* The Sec-WebSocket-Accept a server must answer for `key` (28 characters and a NUL). */
void ws_accept(const char *key, char accept[29]);

/* Appends one masked frame holding `head` then `body` (either may be empty). */
void ws_frame(struct buf *out, int opcode, const void *head, size_t headlen, const void *body, size_t bodylen);

/* What the decoder hands on. A callback that returns non-zero stops the decoding. */
struct ws_sink {
  void *ctx;
  /* Part of a binary message whose first byte was `tag` (the tag itself is not passed on). */
  int (*binary)(void *ctx, int tag, const unsigned char *p, size_t n);
  /* A whole text message. */
  int (*text)(void *ctx, const char *p, size_t n);
  int (*ping)(void *ctx, const unsigned char *p, size_t n);
  int (*close)(void *ctx);
};

struct ws_dec {
  unsigned char hdr[14];
  size_t hdrlen;
  int in_payload;
  int fin, opcode, masked;
  unsigned char mask[4];
  uint64_t remaining, pos;
  /* The data message under way: 0 none, else WS_TEXT or WS_BINARY. */
  int msg;
  int tag; /* -1 until a binary message's first byte */
  struct buf text;
  unsigned char ctl[125];
  size_t ctllen;
};

/* Largest text message taken (the server's one JSON line is far smaller). */
#define WS_MAX_TEXT (4u << 20)

/*
 * Decodes `n` bytes of the server's stream (unmasking in place). Returns 0 when all were taken, 1 when a callback
 * stopped it, -1 on a protocol error (the caller treats the connection as broken).
 */
int ws_feed(struct ws_dec *d, unsigned char *p, size_t n, const struct ws_sink *s);

#endif
