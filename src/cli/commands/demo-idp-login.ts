/**
 * `kubevisa demo idp-login URL`: completes a login at the demo identity provider from a terminal or a
 * script, for machines without a browser (the demo IdP's login page is a plain HTML form).
 */
import type { CommandRun } from '../framework.ts';
import { UsageError } from '../framework.ts';
import { completeLoginWithHttp } from '../../dev/idp.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const url = positionals[0];
  if (!url || !/^https?:\/\//.test(url)) throw new UsageError('give the login URL that kubevisa login printed');
  if (typeof values.login !== 'string' || typeof values.password !== 'string')
    throw new UsageError('--login and --password are required');
  const result = await completeLoginWithHttp({
    url,
    login: values.login,
    password: values.password,
    ...(typeof values['user-code'] === 'string' ? { userCode: values['user-code'] } : {}),
  });
  io.err(
    result.flow === 'device'
      ? `device login ${result.outcome}\n`
      : `logged in; the browser would now go to ${new URL(result.location).origin}\n`,
  );
  return 0;
};
