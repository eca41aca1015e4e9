/**
 * Delivering alerts: `publish` queues and returns at once (it never waits for a receiver, so no API request is held
 * up by a slow or dead webhook), and each sink delivers in the background with a time limit per attempt, retrying
 * failures with exponential backoff and jitter. Queues are bounded: when a receiver is down for long, the oldest
 * pending alerts are dropped (and counted) rather than memory growing without end.
 *
 * Deliveries live in memory: alerts pending when the server stops are lost. The facts behind them are not — they
 * are in the audit trail and in the next scan.
 */
import { randomUUID } from 'node:crypto';
import {
  DEFAULT_RETRY,
  DELIVERY_HEADER,
  EVENT_HEADER,
  retryDelayMs,
  SIGNATURE_HEADER,
  signPayload,
  slackBody,
  TIMESTAMP_HEADER,
  webhookBody,
  type Alert,
  type AlertEvent,
  type RetryPolicy,
} from './alerts.ts';

/** Why one attempt failed, and whether another could succeed. */
export class DeliveryFailed extends Error {
  readonly retryable: boolean;
  /** The receiver's Retry-After, in ms. */
  readonly retryAfterMs: number | undefined;
  constructor(message: string, options: { retryable: boolean; retryAfterMs?: number; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DeliveryFailed';
    this.retryable = options.retryable;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export interface AlertSink {
  /** For metrics and logs (never the URL's secret parts). */
  readonly name: string;
  /** The events this sink wants; undefined for all. */
  readonly events?: ReadonlySet<AlertEvent>;
  /** One attempt. @throws DeliveryFailed */
  send(alert: Alert, signal: AbortSignal): Promise<void>;
}

export type DeliveryOutcome = 'delivered' | 'retrying' | 'failed' | 'dropped';

export interface DispatcherOptions {
  sinks: readonly AlertSink[];
  retry?: Partial<RetryPolicy>;
  /** Time limit of one attempt, in ms (default 10000). */
  attemptTimeoutMs?: number;
  /** Pending deliveries per sink before the oldest is dropped (default 1000). */
  maxPending?: number;
  /** Told about every attempt's outcome (metrics; a log line without secrets). */
  onOutcome?: (event: {
    sink: string;
    alert: Alert;
    outcome: DeliveryOutcome;
    attempt: number;
    error?: string;
  }) => void;
  random?: () => number;
}

interface Delivery {
  alert: Alert;
  attempt: number;
  timer?: NodeJS.Timeout;
}

export class AlertDispatcher {
  readonly #options: DispatcherOptions;
  readonly #retry: RetryPolicy;
  readonly #pending = new Map<AlertSink, Set<Delivery>>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #controller = new AbortController();
  #stopped = false;

  constructor(options: DispatcherOptions) {
    this.#options = options;
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    for (const sink of options.sinks) this.#pending.set(sink, new Set());
  }

  get sinkCount(): number {
    return this.#options.sinks.length;
  }

  /** Queues the alert for every sink that wants it and returns at once. Never throws. */
  publish(alert: Alert): void {
    if (this.#stopped) return;
    for (const sink of this.#options.sinks) {
      if (sink.events !== undefined && !sink.events.has(alert.event)) continue;
      const pending = this.#pending.get(sink)!;
      if (pending.size >= (this.#options.maxPending ?? 1000)) {
        const oldest = pending.values().next().value;
        if (oldest !== undefined) {
          clearTimeout(oldest.timer);
          pending.delete(oldest);
          this.#report(sink, oldest, 'dropped', 'too many pending deliveries');
        }
      }
      const delivery: Delivery = { alert, attempt: 0 };
      pending.add(delivery);
      this.#attempt(sink, delivery);
    }
  }

  /** Pending deliveries (waiting for a retry or in flight), per sink name. */
  pending(): Record<string, number> {
    return Object.fromEntries([...this.#pending].map(([sink, set]) => [sink.name, set.size]));
  }

  /** Waits until nothing is in flight and no retry is due within `timeoutMs`, or the time is up. */
  async idle(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if ([...this.#pending.values()].every((set) => set.size === 0)) return true;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return false;
  }

  /** Stops retrying, aborts attempts in flight and waits for them to end. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const set of this.#pending.values()) for (const delivery of set) clearTimeout(delivery.timer);
    this.#controller.abort();
    await Promise.allSettled([...this.#inFlight]);
    for (const set of this.#pending.values()) set.clear();
  }

  #attempt(sink: AlertSink, delivery: Delivery): void {
    if (this.#stopped) return;
    delivery.attempt++;
    const signal = AbortSignal.any([
      this.#controller.signal,
      AbortSignal.timeout(this.#options.attemptTimeoutMs ?? 10_000),
    ]);
    const run = sink
      .send(delivery.alert, signal)
      .then(
        () => {
          this.#pending.get(sink)?.delete(delivery);
          this.#report(sink, delivery, 'delivered');
        },
        (error: unknown) => this.#failed(sink, delivery, error),
      )
      .finally(() => this.#inFlight.delete(run));
    this.#inFlight.add(run);
  }

  #failed(sink: AlertSink, delivery: Delivery, error: unknown): void {
    const failure =
      error instanceof DeliveryFailed
        ? error
        : new DeliveryFailed(error instanceof Error ? error.message : String(error), { retryable: true });
    const pending = this.#pending.get(sink);
    if (this.#stopped || pending === undefined || !pending.has(delivery)) return;
    if (!failure.retryable || delivery.attempt >= this.#retry.maxAttempts) {
      pending.delete(delivery);
      this.#report(sink, delivery, 'failed', failure.message);
      return;
    }
    this.#report(sink, delivery, 'retrying', failure.message);
    const delay = retryDelayMs(delivery.attempt, this.#retry, this.#options.random, failure.retryAfterMs);
    delivery.timer = setTimeout(() => {
      delivery.timer = undefined;
      this.#attempt(sink, delivery);
    }, delay);
    delivery.timer.unref();
  }

  #report(sink: AlertSink, delivery: Delivery, outcome: DeliveryOutcome, error?: string): void {
    try {
      this.#options.onOutcome?.({
        sink: sink.name,
        alert: delivery.alert,
        outcome,
        attempt: delivery.attempt,
        ...(error === undefined ? {} : { error }),
      });
    } catch (listenerError) {
      // A broken listener (metrics, log) must not stop deliveries; say so where an operator looks.
      process.stderr.write(
        `kubevisa alerts: the delivery listener threw: ${listenerError instanceof Error ? listenerError.message : String(listenerError)}\n`,
      );
    }
  }
}

export interface WebhookSinkOptions {
  name: string;
  url: string;
  /** `webhook`: kubevisa's JSON (signed when a secret is set); `slack`: a Slack-compatible body. */
  format: 'webhook' | 'slack';
  /** HMAC key for the signature headers. A credential: never logged. */
  secret?: string;
  events?: ReadonlySet<AlertEvent>;
  now?: () => number;
}

/** A sink that POSTs each alert to a URL. Redirects are not followed: a signed body goes only where configured. */
export function webhookSink(options: WebhookSinkOptions): AlertSink {
  const now = options.now ?? Date.now;
  const target = new URL(options.url);
  // Shown in errors and metrics: scheme, host and path, never a query (Slack-style URLs carry their secret in the
  // path, so only the first path segment is kept).
  const shown = `${target.protocol}//${target.host}${target.pathname.split('/').slice(0, 2).join('/')}/…`;
  return {
    name: options.name,
    ...(options.events === undefined ? {} : { events: options.events }),
    async send(alert, signal) {
      const body = options.format === 'slack' ? slackBody(alert) : webhookBody(alert);
      const timestamp = Math.floor(now() / 1000);
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'user-agent': 'kubevisa-alerts',
        [EVENT_HEADER]: alert.event,
        [DELIVERY_HEADER]: `${alert.id}/${randomUUID()}`,
        [TIMESTAMP_HEADER]: String(timestamp),
      };
      if (options.secret !== undefined) headers[SIGNATURE_HEADER] = signPayload(options.secret, timestamp, body);
      let response: Response;
      try {
        response = await fetch(target, { method: 'POST', headers, body, redirect: 'manual', signal });
      } catch (error) {
        const timedOut =
          signal.aborted && signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError';
        throw new DeliveryFailed(
          `POST ${shown} ${timedOut ? 'timed out' : `failed: ${error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error)}`}`,
          { retryable: true, cause: error },
        );
      }
      // The body is not needed; reading it frees the connection for reuse.
      await response.arrayBuffer().catch((error: unknown) => {
        if (!(error instanceof Error)) throw error;
      });
      if (response.status >= 200 && response.status < 300) return;
      const retryAfter = Number(response.headers.get('retry-after'));
      const retryable =
        response.status === 408 || response.status === 425 || response.status === 429 || response.status >= 500;
      throw new DeliveryFailed(`POST ${shown} answered ${response.status}`, {
        retryable,
        ...(Number.isFinite(retryAfter) && retryAfter > 0 ? { retryAfterMs: retryAfter * 1000 } : {}),
      });
    },
  };
}
