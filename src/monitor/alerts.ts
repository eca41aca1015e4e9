/**
 * Alerts: what kubevisa tells people about (visa lifecycle, stale access, shadow access, drift, audit failures),
 * how an alert is written for a generic webhook (JSON, HMAC-signed) and for Slack-compatible incoming webhooks,
 * how a receiver checks the signature, and the retry schedule. Pure (hashing aside, which is computation).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { JsonObject } from '../store/store.ts';

export const ALERT_EVENTS = [
  'visa-requested',
  'visa-approved',
  'visa-expiring',
  'visa-expired',
  'visa-revoked',
  'stale-access',
  'shadow-access',
  'risky-permission',
  'drift-detected',
  'drift-repaired',
  'audit-verification-failed',
  'scim-user-refused',
] as const;
export type AlertEvent = (typeof ALERT_EVENTS)[number];

export type AlertSeverity = 'critical' | 'warning' | 'info';

export interface Alert {
  /** Unique per fact (`visa-expired:v_1`): a receiver can drop a duplicate delivery by it. */
  id: string;
  event: AlertEvent;
  severity: AlertSeverity;
  /** RFC 3339 (UTC): when it happened. */
  at: string;
  /** A short line: `Visa v_1 expired`. */
  title: string;
  /** What happened and what to do, for a person. */
  text: string;
  cluster?: string;
  visaId?: string;
  /** The person concerned (the holder). */
  personEmail?: string;
  /** Who should read it (the holder, the sponsor…): emails, for receivers that route or mention. */
  recipients: string[];
  details: JsonObject;
}

/** Version tag of the generic webhook body. */
export const WEBHOOK_BODY_VERSION = 'kubevisa.alert/v1';
export const SIGNATURE_HEADER = 'x-kubevisa-signature';
export const TIMESTAMP_HEADER = 'x-kubevisa-timestamp';
export const EVENT_HEADER = 'x-kubevisa-event';
export const DELIVERY_HEADER = 'x-kubevisa-delivery';

/** The generic webhook body. */
export function webhookBody(alert: Alert): string {
  return JSON.stringify({ version: WEBHOOK_BODY_VERSION, ...alert });
}

const SLACK_ICON: Record<AlertSeverity, string> = {
  critical: ':rotating_light:',
  warning: ':warning:',
  info: ':information_source:',
};

/**
 * A Slack incoming-webhook body (also accepted by Mattermost, Rocket.Chat and Teams' Slack-compatible endpoints):
 * `text` for notifications and clients without blocks, and the same as one mrkdwn section.
 */
export function slackBody(alert: Alert): string {
  const context = [
    alert.cluster ? `cluster *${escapeSlack(alert.cluster)}*` : '',
    alert.visaId ? `visa \`${escapeSlack(alert.visaId)}\`` : '',
    alert.recipients.length > 0 ? `for ${alert.recipients.map(escapeSlack).join(', ')}` : '',
  ].filter((part) => part !== '');
  const text = `${SLACK_ICON[alert.severity]} *${escapeSlack(alert.title)}*\n${escapeSlack(alert.text)}`;
  return JSON.stringify({
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: text.slice(0, 3000) } },
      ...(context.length > 0 ? [{ type: 'context', elements: [{ type: 'mrkdwn', text: context.join(' · ') }] }] : []),
    ],
  });
}

/**
 * The signature header value: `sha256=` + hex HMAC-SHA256 over `<timestamp>.<body>` with the shared secret. The
 * timestamp (Unix seconds, sent in its own header) is signed too, so a captured delivery cannot be replayed later.
 */
export function signPayload(secret: string, timestampSeconds: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestampSeconds}.${body}`).digest('hex')}`;
}

/**
 * What a receiver does: recompute the signature, compare in constant time, and refuse a timestamp more than
 * `toleranceSeconds` (default 300) away from its clock.
 */
export function verifySignature(input: {
  secret: string;
  body: string;
  signature: string | undefined;
  timestamp: string | undefined;
  nowMs?: number;
  toleranceSeconds?: number;
}): boolean {
  const { signature, timestamp } = input;
  if (signature === undefined || timestamp === undefined || !/^\d{1,12}$/.test(timestamp)) return false;
  const seconds = Number(timestamp);
  const nowSeconds = Math.floor((input.nowMs ?? Date.now()) / 1000);
  if (Math.abs(nowSeconds - seconds) > (input.toleranceSeconds ?? 300)) return false;
  const expected = Buffer.from(signPayload(input.secret, seconds, input.body));
  const given = Buffer.from(signature);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export interface RetryPolicy {
  /** Attempts in all, the first included (default 8). */
  maxAttempts: number;
  /** Wait before the second attempt, in ms (default 1000); doubles each time. */
  initialDelayMs: number;
  /** Longest wait between attempts, in ms (default 300000). */
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 8, initialDelayMs: 1000, maxDelayMs: 300_000 };

/**
 * The wait after failed attempt number `attempt` (1-based): exponential, capped, with jitter in [50 %, 100 %] so
 * receivers that failed together are not hit together again. A receiver's Retry-After (ms) is honoured up to the cap.
 */
export function retryDelayMs(
  attempt: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
  retryAfterMs?: number,
): number {
  const exponential = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.max(0, attempt - 1));
  const jittered = Math.round(exponential * (0.5 + random() * 0.5));
  return retryAfterMs === undefined ? jittered : Math.min(policy.maxDelayMs, Math.max(jittered, retryAfterMs));
}

function escapeSlack(text: string): string {
  // Slack's three control characters in mrkdwn; everything else is literal.
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}
