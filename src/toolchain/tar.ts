// A minimal ustar writer, enough to assemble an image archive from a rootfs tarball.

export function tarHeader(name: string, size: number, mtime = 0, mode = 0o644, type = '0', linkName = ''): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long: ${name}`);
  const h = Buffer.alloc(512, 0);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(mode, 7), 100);
  h.write(octal(0, 7), 108);
  h.write(octal(0, 7), 116);
  h.write(octal(size, 11), 124);
  h.write(octal(mtime, 11), 136);
  h.write('        ', 148); // checksum placeholder
  h.write(type, 156);
  if (linkName) h.write(linkName, 157, 100, 'utf8');
  h.write('ustar\u000000', 257, 'binary');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\u0000 ', 148, 'binary');
  return h;
}

export function tarPadding(size: number): Buffer {
  const rem = size % 512;
  return Buffer.alloc(rem === 0 ? 0 : 512 - rem, 0);
}

export const TAR_END = Buffer.alloc(1024, 0);

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width, '0') + '\u0000';
}
