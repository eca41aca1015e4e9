import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StreamRegistry, type OpenStream } from './streams.ts';

function stream(visaId: string, closed: string[]): Omit<OpenStream, 'id'> {
  return {
    personId: 'p1',
    email: 'cora@vendor.example',
    sessionId: 's_1',
    cluster: 'prod',
    namespace: 'shop',
    visaId,
    visas: [{ id: visaId, notAfter: 1 }],
    kind: 'upgrade',
    session: true,
    recorded: false,
    startedAt: 0,
    close: (reason) => closed.push(`${visaId}: ${reason}`),
  };
}

describe('stream registry', () => {
  test('closeWhere closes exactly the streams it picks and forgets them', () => {
    const closed: string[] = [];
    const registry = new StreamRegistry();
    registry.add(stream('v1', closed));
    registry.add(stream('v2', closed));
    assert.equal(
      registry.closeWhere((s) => s.visaId === 'v1', 'revoked'),
      1,
    );
    assert.deepEqual(closed, ['v1: revoked']);
    assert.deepEqual(
      registry.all().map((s) => s.visaId),
      ['v2'],
    );
  });

  test('a stream whose access ended while it was being opened is closed as it is added, not kept', () => {
    // The revoke ran while the request was between admission and registration (e.g. opening its recording):
    // closeWhere could not see it, so add() must.
    let allowed = true;
    const closed: string[] = [];
    const registry = new StreamRegistry((s) => allowed && s.visaId !== 'gone');
    registry.add(stream('kept', closed));
    allowed = false;
    assert.equal(
      registry.closeWhere(() => true, 'revoked'),
      1,
    );
    registry.add(stream('late', closed));
    assert.deepEqual(closed, ['kept: revoked', 'late: access ended while the request was being opened']);
    assert.equal(registry.size, 0);
  });
});
