// Named points where a test can make the daemon stop and wait, to kill it there for real.
// Inert unless BERTH_FAILPOINTS lists the name (comma-separated); read lazily, per call.

export async function failpoint(name: string): Promise<void> {
  const list = process.env.BERTH_FAILPOINTS;
  if (!list || !list.split(',').includes(name)) return;
  process.stderr.write(`berth: failpoint ${name} reached; waiting\n`);
  await new Promise((resolve) => setTimeout(resolve, 600_000));
}
