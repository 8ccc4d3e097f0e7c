/**
 * What every implementation of `nsgi.input` shares (SPEC §5): the server's, and the adapters' over
 * a node:http request and a fetch Request's stream.
 */
import type { Input } from '../protocol/nsgi.ts';
import { AppError } from './errors.ts';

/**
 * InputBase is the common part of every `nsgi.input`: it can be iterated once (IN-2), and
 * `bytes()` and `text()` read it to its end. A subclass supplies the iterator.
 */
export abstract class InputBase implements Input {
  private iterated = false;

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.iterated) throw new TypeError('nsgi.input can be iterated only once (SPEC §5, IN-2)');
    this.iterated = true;
    return this.iterate();
  }

  /** iterate makes the one iterator of the body. */
  protected abstract iterate(): AsyncIterator<Uint8Array>;

  /** bytes reads the rest of the body into one buffer. */
  bytes(): Promise<Uint8Array> {
    return readBytes(this);
  }

  /** text reads the rest of the body and decodes it as UTF-8. */
  text(): Promise<string> {
    return readText(this);
  }
}

/**
 * inputAfterResponse is the error of a read made after the response ended with the body unread:
 * the rest was discarded, and the app must not take what it got for the whole (IN-8).
 */
export function inputAfterResponse(): AppError {
  return new AppError('NSGI_INPUT_AFTER_RESPONSE', 'the response ended before the request body was read; the rest of the body was discarded (SPEC §5, IN-8)');
}

/** readBytes reads an input to its end into one buffer: `Input.bytes()`. */
export async function readBytes(input: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of input) parts.push(part);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** readText reads an input to its end and decodes it as UTF-8: `Input.text()`. */
export async function readText(input: AsyncIterable<Uint8Array>): Promise<string> {
  return new TextDecoder().decode(await readBytes(input));
}
