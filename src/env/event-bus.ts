// The node's events: each one stored with an id that only grows (so a client that reconnects
// with the last id it saw gets what it missed, even across a daemon restart) and handed to the
// live subscribers at once.
import type { BerthEvent, EventInput } from '../core/events.js';
import type { StateDb } from '../state/state-db.js';

/** How many events the node keeps for clients that reconnect. */
const KEEP = 10_000;

export type EventListener = (e: BerthEvent) => void;

export class EventBus {
  private readonly listeners = new Set<EventListener>();
  private sinceTrim = 0;

  constructor(private readonly db: StateDb) {}

  emit(input: EventInput): BerthEvent {
    const at = new Date().toISOString();
    const id = this.db.appendEvent({ at, env: input.env, agent: input.agent, body: JSON.stringify(input) });
    const event = { ...input, id, at };
    if (++this.sinceTrim >= 500) {
      this.sinceTrim = 0;
      this.db.trimEvents(KEEP);
    }
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        /* a listener's fault is its own */
      }
    }
    return event;
  }

  /** Stored events after `since`, oldest first. */
  since(since: number, limit = KEEP): BerthEvent[] {
    return this.db.eventsSince(since, limit).map((r) => ({ ...(JSON.parse(r.body) as EventInput), id: r.id, at: r.at }));
  }

  get lastId(): number {
    return this.db.lastEventId();
  }

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
