// The dashboard's own commands in an environment (the diff view), which are not the agent's
// activity. They are known by their whole command line, never by a marker an agent could add
// to its own: an agent that runs exactly this command hides only this command.
const DIFF_SCRIPT =
  'cd /workspace && git -c core.quotepath=off diff --no-color "$1" -- ; ' +
  'git ls-files --others --exclude-standard -z | head -z -n 200 | ' +
  'xargs -0 -r -n1 git -c core.quotepath=off diff --no-color --no-index /dev/null 2>/dev/null; true';
const NAME = 'berth.dashboard.diff';
const COMMIT = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

/** The diff view's command: the tracked changes since `commit`, and untracked files as new. */
export function diffArgv(commit: string): string[] {
  return ['sh', '-c', DIFF_SCRIPT, NAME, commit];
}

/** Is this command line the dashboard's own, exactly? */
export function isOwnCommand(argv: readonly string[]): boolean {
  return argv.length === 5 && argv[0] === 'sh' && argv[1] === '-c' && argv[2] === DIFF_SCRIPT && argv[3] === NAME && COMMIT.test(argv[4]!);
}
