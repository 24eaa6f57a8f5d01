// Reaching an environment's agent through the API server, with no host path and no Pod
// address: an exec stream (core/v1 pods/exec over WebSocket, v4.channel.k8s.io) runs a relay
// in the Pod that joins its stdin and stdout to the agent's unix socket. One stream carries
// the agent's whole multiplexed protocol, so it is opened once per environment and every
// command after that costs one round trip through the API server and the kubelet.
import { Duplex, PassThrough, Writable } from 'node:stream';
import { Exec, type KubeConfig } from '@kubernetes/client-node';
import type { AgentChannel } from '../backend.js';
import { AGENT_DIR, AGENT_SOCKET } from './pod-spec.js';

/** Joins stdin and stdout to the agent's socket; exits when either side ends. */
const RELAY = [
  "const s=require('net').connect(process.argv[1]);",
  'process.stdin.pipe(s);s.pipe(process.stdout);',
  "s.on('close',()=>process.exit(0));s.on('error',()=>process.exit(3));",
  "process.stdin.on('end',()=>s.end());",
].join('');

export class ExecAgentChannel implements AgentChannel {
  private readonly exec: Exec;

  constructor(
    kc: KubeConfig,
    private readonly namespace: string,
    private readonly pod: string,
    private readonly container = 'env',
  ) {
    this.exec = new Exec(kc);
  }

  get describe(): string {
    return `kubernetes exec ${this.namespace}/${this.pod}`;
  }

  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }

  async open(signal?: AbortSignal): Promise<Duplex> {
    signal?.throwIfAborted();
    const stdin = new PassThrough();
    let failure: string | null = null;
    // eslint-disable-next-line prefer-const
    let duplex: Duplex;
    const stdout = new Writable({
      write(chunk: Buffer, _enc, cb): void {
        duplex.push(chunk);
        cb();
      },
    });
    const stderr = new Writable({
      write(chunk: Buffer, _enc, cb): void {
        failure = (failure ?? '') + chunk.toString('utf8');
        cb();
      },
    });
    const ws = await this.exec.exec(
      this.namespace,
      this.pod,
      this.container,
      [`${AGENT_DIR}/bin/node`, '-e', RELAY, AGENT_SOCKET],
      stdout,
      stderr,
      stdin,
      false,
      (status) => {
        if (status.status !== 'Success') failure = status.message ?? 'the relay exited';
      },
    );
    duplex = new Duplex({
      write(chunk: Buffer, _enc, cb): void {
        stdin.write(chunk, cb);
      },
      final(cb): void {
        stdin.end();
        cb();
      },
      read(): void {},
      destroy(err, cb): void {
        ws.close();
        cb(err);
      },
    });
    ws.on('close', () => {
      if (failure) duplex.destroy(new Error(failure.trim().split('\n')[0]));
      else duplex.push(null);
    });
    ws.on('error', (err) => duplex.destroy(err));
    // The signal bounds the opening only: the stream then lives as long as the connection.
    if (signal?.aborted) duplex.destroy(new Error('aborted'));
    return duplex;
  }
}
