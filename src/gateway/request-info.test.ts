import { test } from 'node:test';
import assert from 'node:assert/strict';
import { queryFlag, requestInfo } from './request-info.ts';

test('a watch is read as kube-apiserver reads it: any first value but 0 or false, with the name decoded', () => {
  for (const query of [
    'watch=true',
    'watch=1',
    'watch=True',
    'watch=yes',
    'watch=',
    'watch',
    'w%61tch=1',
    'watch=tr%75e',
  ])
    assert.equal(requestInfo('GET', '/api/v1/namespaces/a/pods', query).verb, 'watch', query);
  for (const query of [
    '',
    'watch=false',
    'watch=FALSE',
    'watch=0',
    'watch=0&watch=1',
    'x;watch=1',
    'watch=%zz',
    'watcha=1',
  ])
    assert.equal(requestInfo('GET', '/api/v1/namespaces/a/pods', query).verb, 'list', query);
});

test('a GET of one named object stays a get whatever its watch parameter says, as in kube-apiserver', () => {
  assert.equal(requestInfo('GET', '/api/v1/namespaces/a/pods/p', 'watch=true').verb, 'get');
  assert.equal(requestInfo('GET', '/api/v1/watch/namespaces/a/pods/p', '').verb, 'watch');
});

test('followed logs are recognised by the same reading', () => {
  assert.equal(queryFlag('container=c&follow=True', 'follow'), true);
  assert.equal(queryFlag('follow=false', 'follow'), false);
});
