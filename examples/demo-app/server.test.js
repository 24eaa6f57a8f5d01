const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const { handler } = require('./server.js');

test('health answers ok', async () => {
  const server = http.createServer(handler).listen(0);
  const { port } = server.address();
  const body = await new Promise((resolve, reject) => {
    http
      .get(`http://127.0.0.1:${port}/health`, (res) => {
        let data = '';
        res.on('data', (c) => (data += c));
        res.on('end', () => resolve(data));
      })
      .on('error', reject);
  });
  server.close();
  assert.deepStrictEqual(JSON.parse(body), { ok: true });
});
