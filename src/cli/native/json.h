/*
 * The JSON the native exec client writes (the exec request, byte for byte what the Node CLI's
 * JSON.stringify writes) and reads (the node's last message: {"exit": ...} or {"error": ...}).
 */
#ifndef BERTH_JSON_H
#define BERTH_JSON_H

#include <stddef.h>

#include "buf.h"

/* True when `s` is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF). */
int utf8_valid(const char *s);

/* Appends `s` as a JSON string, escaped as JSON.stringify escapes it. */
void json_string(struct buf *b, const char *s);

/* A berth error as the node sends it: {code, message, hint?}; fields are NULL when absent. */
struct wire_error {
  int valid; /* an object with a string code and a string message */
  char *code, *message, *hint;
};

/* The last message of an exec stream. */
struct exec_final {
  int is_json;
  int is_exit;     /* msg.exit is truthy: the command finished */
  long exit_code;  /* msg.exit.exitCode, when it is an integer */
  int timed_out;   /* msg.exit.timedOut is truthy */
  struct wire_error error;
};

void json_final(const char *p, size_t n, struct exec_final *out);

/* Reads an HTTP error body {"error": {...}}; returns 0 when the body is JSON, -1 when not. */
int json_error_body(const char *p, size_t n, struct wire_error *out);

#endif
