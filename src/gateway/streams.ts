/**
 * Every request the gateway is relaying right now — plain, watch, logs -f, exec, attach, port-forward —
 * registered under its person, cluster and namespace, so that ending a visa can close exactly the streams it
 * backed. Kubernetes never re-authorizes an open stream; this registry is what does.
 */
export interface OpenStream {
  id: number;
  personId: string;
  email: string;
  /** The kubevisa session whose token opened it: the stream ends with that session (logout). */
  sessionId: string;
  cluster: string;
  namespace: string | undefined;
  /** The strictest of the visas that allowed it (the one whose rules it follows). */
  visaId: string;
  /** Every visa that allowed it when it was admitted, with when each ends (epoch ms). */
  visas: readonly { id: string; notAfter: number }[];
  kind: 'request' | 'watch' | 'upgrade';
  /** An exec or attach session, which a profile may require to be recorded. */
  session: boolean;
  /** Its bytes are being recorded (asciicast). */
  recorded: boolean;
  startedAt: number;
  /**
   * Ends the stream on both sides and records why. `notice`, when given, is what the client is told before the
   * stream closes (a watch gets it as its last event).
   */
  close(reason: string, notice?: EndNotice): void;
}

/** Why access ended, in the shape of a Kubernetes Status: what kube-apiserver sends when it ends a watch. */
export interface EndNotice {
  message: string;
  reason: 'Expired' | 'Forbidden' | 'ServiceUnavailable';
  code: 410 | 403 | 503;
}

export class StreamRegistry {
  private readonly open = new Map<number, OpenStream>();
  private nextId = 1;
  private readonly stillAllowed: (stream: OpenStream) => boolean;

  /**
   * `stillAllowed` is asked again as each stream is added. A request is admitted, then may wait (opening a session
   * recording, reading the token's session) before it registers; a revoke that lands in between closes only what
   * is registered, so without this second look the late stream would outlive the visa.
   */
  constructor(stillAllowed: (stream: OpenStream) => boolean = () => true) {
    this.stillAllowed = stillAllowed;
  }

  /** Registers a stream, or closes it at once if its access ended while it was being opened. */
  add(stream: Omit<OpenStream, 'id'>): OpenStream {
    const entry = { ...stream, id: this.nextId++ };
    if (!this.stillAllowed(entry)) {
      entry.close('access ended while the request was being opened');
      return entry;
    }
    this.open.set(entry.id, entry);
    return entry;
  }

  remove(stream: OpenStream): void {
    this.open.delete(stream.id);
  }

  get size(): number {
    return this.open.size;
  }

  /**
   * Closes every stream `shouldClose` picks (true, or the notice to send it first); returns how many.
   */
  closeWhere(shouldClose: (stream: OpenStream) => boolean | EndNotice, reason: string): number {
    let closed = 0;
    for (const stream of [...this.open.values()]) {
      const verdict = shouldClose(stream);
      if (verdict !== false) {
        this.open.delete(stream.id);
        stream.close(reason, verdict === true ? undefined : verdict);
        closed++;
      }
    }
    return closed;
  }

  all(): OpenStream[] {
    return [...this.open.values()];
  }
}
