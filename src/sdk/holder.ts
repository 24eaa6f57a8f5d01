// Who a human is, as a takeover names them: `$USER@hostname` of the machine the call comes from.
import { hostname, userInfo } from 'node:os';

export function defaultHolder(): string {
  let user = process.env.USER ?? process.env.LOGNAME;
  if (!user) {
    try {
      user = userInfo().username;
    } catch {
      user = 'user';
    }
  }
  return `${user}@${hostname()}`;
}
