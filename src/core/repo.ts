// Repository names: a network URL (or scp-like `user@host:path`) is remote; anything else is a path.
export function isRemoteRepo(repo: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(repo) || /^[^/\s]+@[^:\s]+:/.test(repo);
}
