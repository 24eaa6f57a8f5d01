// Reads the Debian mirror from the apt sources the machine already has. Both formats:
// deb822 (`*.sources`) and one-line (`sources.list`). Pure: the caller reads the files.

export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
}

export function parseDeb822(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields: Record<string, string> = {};
    let last = '';
    for (const raw of stanza.split('\n')) {
      if (raw.startsWith('#')) continue;
      if (/^\s/.test(raw) && last) {
        fields[last] += ' ' + raw.trim();
        continue;
      }
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(raw);
      if (m) {
        last = m[1]!.toLowerCase();
        fields[last] = m[2]!.trim();
      }
    }
    if (!(fields.types ?? '').split(/\s+/).includes('deb')) continue;
    if ((fields.enabled ?? 'yes').toLowerCase() === 'no') continue;
    for (const uri of (fields.uris ?? '').split(/\s+/).filter(Boolean)) {
      out.push({
        uri,
        suites: (fields.suites ?? '').split(/\s+/).filter(Boolean),
        components: (fields.components ?? '').split(/\s+/).filter(Boolean),
      });
    }
  }
  return out;
}

export function parseOneLine(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line.startsWith('deb ')) continue;
    const parts = line.split(/\s+/).slice(1);
    if (parts[0]?.startsWith('[')) {
      while (parts.length && !parts[0]?.endsWith(']')) parts.shift();
      parts.shift();
    }
    const [uri, suite, ...components] = parts;
    if (uri && suite) out.push({ uri, suites: [suite], components });
  }
  return out;
}

/** The mirror that serves `suite` itself (not -security or -updates), first found wins. */
export function mirrorFor(sources: AptSource[], suite: string): AptSource | undefined {
  return sources.find((s) => s.suites.includes(suite) && /^https?:\/\//.test(s.uri));
}
