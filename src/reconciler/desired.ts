/** The objects a granting visa calls for, and whether an actual object has drifted from them. */
import {
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

export function roleBindingDrifted(actual: RoleBinding, desired: RoleBinding): boolean {
  return !roleBindingMatches(actual, desired);
}
