// Test results as evidence: TAP (node --test, many JS runners) and JUnit XML (nearly every
// other runner) parsed into counts and the names of what failed.

export interface TestSummary {
  format: 'tap' | 'junit';
  passed: number;
  failed: number;
  skipped: number;
  total: number;
  failures: string[];
}

export function parseTap(text: string): TestSummary | null {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const failures: string[] = [];
  let seen = false;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    // Top-level results only: subtests are indented.
    const m = /^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?([^#]*)(?:#\s*(SKIP|TODO)\b.*)?$/i.exec(line);
    if (!m) continue;
    seen = true;
    const directive = m[4]?.toUpperCase();
    if (directive === 'SKIP' || directive === 'TODO') skipped++;
    else if (m[1]!.toLowerCase() === 'ok') passed++;
    else {
      failed++;
      failures.push(m[3]!.trim());
    }
  }
  if (!seen) return null;
  return { format: 'tap', passed, failed, skipped, total: passed + failed + skipped, failures };
}

export function parseJUnit(xml: string): TestSummary | null {
  if (!/<testsuites?\b/.test(xml) && !/<testcase\b/.test(xml)) return null;
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const failures: string[] = [];
  const re = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (let m = re.exec(xml); m; m = re.exec(xml)) {
    const attrs = m[1] ?? '';
    const body = m[3] ?? '';
    const name = /\bname="([^"]*)"/.exec(attrs)?.[1] ?? '?';
    const cls = /\bclassname="([^"]*)"/.exec(attrs)?.[1];
    if (/<(failure|error)\b/.test(body)) {
      failed++;
      failures.push(unescapeXml(cls ? `${cls} ${name}` : name));
    } else if (/<skipped\b/.test(body)) skipped++;
    else passed++;
  }
  return { format: 'junit', passed, failed, skipped, total: passed + failed + skipped, failures };
}

function unescapeXml(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}
