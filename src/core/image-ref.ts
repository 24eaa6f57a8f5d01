// Image references as a client may give them (a toolchain): a digest, or a name the engines
// parse. Anything else is the client's mistake, refused before the engine is asked.

/** An image id or content digest: `sha256:` and 64 lowercase hex digits. */
export const IMAGE_DIGEST = /^sha256:[0-9a-f]{64}$/;

// The Docker reference grammar (distribution/reference): [domain/]path[:tag][@digest], where
// each path component is lowercase alphanumerics joined by `.`, `_`, `__` or dashes. A short
// image id (hex digits) is a valid name too; the engines resolve it.
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN_PART = '[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?';
const DOMAIN = `${DOMAIN_PART}(?:\\.${DOMAIN_PART})*(?::[0-9]{1,5})?`;
const REFERENCE = new RegExp(`^(?:${DOMAIN}/)?${COMPONENT}(?:/${COMPONENT})*(?::[\\w][\\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$`);

export const IMAGE_REF_RULE = 'a toolchain is sha256:<64 hex digits>, or an image name such as registry:5000/name:tag';

/** True for `sha256:<64 hex>` and for a well-formed image name (with an optional tag and digest). */
export function isImageRef(ref: string): boolean {
  if (ref.length === 0 || ref.length > 255) return false;
  // `sha256:zz` would parse as the name `sha256` with the tag `zz`: a digest it must be.
  if (/^sha256:/i.test(ref)) return IMAGE_DIGEST.test(ref);
  return REFERENCE.test(ref);
}
