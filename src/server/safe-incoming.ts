/**
 * Every kubevisa process runs with `--disable-proto=throw`, so that outside data reaching an object prototype fails
 * loudly. Node's HTTP parser, though, builds `request.headers` by assigning each header name as a property of a
 * plain object: a request carrying a header named `__proto__` would throw inside Node's own parser, outside any
 * handler, and one anonymous request would end the server. This IncomingMessage leaves that one name out of
 * `headers`, `headersDistinct` and the trailers, which is what Node does without the flag (assigning a string to
 * `__proto__` is a no-op there). `rawHeaders` still holds it, so the gateway's header filters see it and drop it.
 */
import { IncomingMessage } from 'node:http';

type AddHeaderLine = (field: string, value: string, dest: Record<string, unknown>) => void;

function isProtoName(field: string): boolean {
  return field.length === 9 && field.toLowerCase() === '__proto__';
}

// `_addHeaderLine` and `_addHeaderLineDistinct` are the (untyped) methods Node's http module calls for each header
// and trailer line when it builds the objects; they are the only place that assigns outside names as properties.
const base = IncomingMessage.prototype as unknown as {
  _addHeaderLine: AddHeaderLine;
  _addHeaderLineDistinct: AddHeaderLine;
};

export class ProtoSafeIncomingMessage extends IncomingMessage {
  _addHeaderLine(field: string, value: string, dest: Record<string, unknown>): void {
    if (!isProtoName(field)) base._addHeaderLine.call(this, field, value, dest);
  }

  _addHeaderLineDistinct(field: string, value: string, dest: Record<string, unknown>): void {
    if (!isProtoName(field)) base._addHeaderLineDistinct.call(this, field, value, dest);
  }
}
