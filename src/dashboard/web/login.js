// The login page: trades the one-time token in the URL's fragment (never sent to a server in
// a URL, never in a log) for a session cookie, then opens the dashboard.
const state = document.getElementById('login-state');
const token = location.hash.slice(1);
history.replaceState(null, '', '/login');
if (!token) {
  state.textContent = 'Not signed in. Run `berth dashboard` for a login link.';
  state.className = 'bad';
} else {
  fetch('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) })
    .then(async (r) => {
      if (r.ok) return location.replace('/');
      const body = await r.json().catch(() => ({}));
      state.textContent = `${body.error?.message ?? `sign-in failed (HTTP ${r.status})`}. ${body.error?.hint ?? ''}`.trim();
      state.className = 'bad';
    })
    .catch(() => {
      state.textContent = 'The node does not answer. Is it running?';
      state.className = 'bad';
    });
}
