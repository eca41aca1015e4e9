/**
 * Reading the policy: which auto-approval rule covers a request, whether a start time is within working hours,
 * and which limit bounds a visa's length. Pure: instants are passed in.
 */
import { InvalidInput } from './errors.ts';
import type { AutoApprovalRule, Engagement, Instant, Policy, Profile, WorkingHours } from './model.ts';
import { matchesAnyPattern } from './names.ts';

/** What an auto-approval rule is matched against. */
/** The policy a server runs with when its config names none: one approval, at most 7 days, notice an hour before. */
export const defaultPolicy: Policy = {
  requiredApprovals: 1,
  approverGroups: [],
  autoApproval: [],
  maxVisaSeconds: 7 * 86_400,
  expiryNoticeSeconds: 3600,
};

export interface ApprovalSubject {
  cluster: string;
  namespaces: readonly string[];
  profile: string;
  durationSeconds: number;
}

/**
 * The first auto-approval rule that covers the whole request: the profile and cluster are listed, every
 * namespace matches one of the rule's patterns, and the duration (seconds) is at most the rule's `maxSeconds`.
 */
export function findAutoApprovalRule(policy: Policy, subject: ApprovalSubject): AutoApprovalRule | undefined {
  return policy.autoApproval.find(
    (rule) =>
      rule.profiles.includes(subject.profile) &&
      rule.clusters.includes(subject.cluster) &&
      subject.namespaces.length > 0 &&
      subject.namespaces.every((namespace) => matchesAnyPattern(namespace, rule.namespacePatterns)) &&
      subject.durationSeconds <= rule.maxSeconds,
  );
}

/** The longest visa allowed, in seconds, and which of the three limits sets it (the first one on a tie). */
export interface VisaLengthLimit {
  maxSeconds: number;
  setBy: 'engagement' | 'profile' | 'policy';
}

/** The least of the engagement's, the profile's and the policy's longest visa. */
export function visaLengthLimit(engagement: Engagement, profile: Profile, policy: Policy): VisaLengthLimit {
  const limits: VisaLengthLimit[] = [
    { maxSeconds: engagement.maxVisaSeconds, setBy: 'engagement' },
    { maxSeconds: profile.maxVisaSeconds, setBy: 'profile' },
    { maxSeconds: policy.maxVisaSeconds, setBy: 'policy' },
  ];
  return limits.reduce((least, limit) => (limit.maxSeconds < least.maxSeconds ? limit : least));
}

const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'] as const;

/** Day of the week (0 = Sunday) and wall-clock time at an instant in an IANA time zone. */
export interface LocalTime {
  weekday: number;
  hour: number;
  minute: number;
}

/**
 * The wall-clock time at `at` in `timeZone`, computed with Intl (pure: the time zone database is data).
 * @throws InvalidInput when the time zone is not a known IANA name.
 */
export function localTime(at: Instant, timeZone: string): LocalTime {
  let format: Intl.DateTimeFormat;
  try {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      weekday: 'long',
      hour: 'numeric',
      minute: 'numeric',
      hourCycle: 'h23',
    });
  } catch (error) {
    throw new InvalidInput(`working hours: '${timeZone}' is not a known IANA time zone (e.g. Europe/Berlin)`, {
      details: { field: 'workingHours.timeZone', value: timeZone },
      cause: error,
    });
  }
  const parts = format.formatToParts(at);
  const part = (type: Intl.DateTimeFormatPartTypes): string => parts.find((p) => p.type === type)?.value ?? '';
  return {
    weekday: WEEKDAYS.indexOf(part('weekday') as (typeof WEEKDAYS)[number]),
    hour: Number(part('hour')),
    minute: Number(part('minute')),
  };
}

/** True when `at` falls on one of the allowed days and within [fromHour, toHour) in the hours' time zone. */
export function isWithinWorkingHours(hours: WorkingHours, at: Instant): boolean {
  const local = localTime(at, hours.timeZone);
  return hours.days.includes(local.weekday) && local.hour >= hours.fromHour && local.hour < hours.toHour;
}

/** Working hours as a person reads them: `Monday, Tuesday 09:00–18:00 Europe/Berlin`. */
export function describeWorkingHours(hours: WorkingHours): string {
  const days = [...hours.days]
    .sort((a, b) => a - b)
    .map((day) => WEEKDAYS[day] ?? `day ${day}`)
    .join(', ');
  return `${days} ${twoDigits(hours.fromHour)}:00–${twoDigits(hours.toHour)}:00 ${hours.timeZone}`;
}

/** A local time as a person reads it: `Saturday 10:05`. */
export function describeLocalTime(local: LocalTime): string {
  return `${WEEKDAYS[local.weekday] ?? `day ${local.weekday}`} ${twoDigits(local.hour)}:${twoDigits(local.minute)}`;
}

function twoDigits(value: number): string {
  return String(value).padStart(2, '0');
}
