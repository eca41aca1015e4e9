/** The objects a granting visa calls for, and whether an actual object has drifted from them. */
import {
  PERSON_ID_ANNOTATION,
  personServiceAccount,
  roleBindingMatches,
  visaRoleBinding,
  type RoleBinding,
  type ServiceAccount,
} from '../cluster/objects.ts';
import type { Visa } from '../domain/model.ts';

export function desiredServiceAccount(email: string, personId: string): ServiceAccount {
  return personServiceAccount({ email, personId });
}

export function desiredRoleBinding(visa: Visa, namespace: string): RoleBinding {
  return visaRoleBinding({ visa, namespace });
}

/** The kubevisa person a ServiceAccount was made for (its person-id annotation). */
export function ownerOf(account: ServiceAccount): string | undefined {
  return account.metadata.annotations?.[PERSON_ID_ANNOTATION];
}

export function roleBindingDrifted(actual: RoleBinding, desired: RoleBinding): boolean {
  return !roleBindingMatches(actual, desired);
}
