/**
 * The media types {@link sendFile} and {@link staticFiles} give files by their extension. The table
 * is nsgi's own, kept to the formats a web server commonly serves (the IANA media type registry
 * and the WHATWG MIME Sniffing standard's list name them); anything else is
 * `application/octet-stream`, which a browser downloads rather than guesses at (RFC 9110 §8.3).
 */

/** DEFAULT_MEDIA_TYPE is the type of a file whose extension the table does not know. */
export const DEFAULT_MEDIA_TYPE = 'application/octet-stream';

/** UTF8 marks the text types, which are served with `; charset=utf-8`. */
const UTF8 = '; charset=utf-8';

/** MEDIA_TYPES maps a lower-case extension, without its dot, to a Content-Type value. */
export const MEDIA_TYPES: ReadonlyMap<string, string> = new Map([
  ['html', `text/html${UTF8}`],
  ['htm', `text/html${UTF8}`],
  ['css', `text/css${UTF8}`],
  ['js', `text/javascript${UTF8}`],
  ['mjs', `text/javascript${UTF8}`],
  ['json', 'application/json'],
  ['map', 'application/json'],
  ['webmanifest', 'application/manifest+json'],
  ['txt', `text/plain${UTF8}`],
  ['md', `text/markdown${UTF8}`],
  ['csv', `text/csv${UTF8}`],
  ['xml', 'application/xml'],
  ['svg', 'image/svg+xml'],
  ['png', 'image/png'],
  ['jpg', 'image/jpeg'],
  ['jpeg', 'image/jpeg'],
  ['gif', 'image/gif'],
  ['webp', 'image/webp'],
  ['avif', 'image/avif'],
  ['ico', 'image/x-icon'],
  ['bmp', 'image/bmp'],
  ['woff', 'font/woff'],
  ['woff2', 'font/woff2'],
  ['ttf', 'font/ttf'],
  ['otf', 'font/otf'],
  ['wasm', 'application/wasm'],
  ['pdf', 'application/pdf'],
  ['zip', 'application/zip'],
  ['gz', 'application/gzip'],
  ['tar', 'application/x-tar'],
  ['mp3', 'audio/mpeg'],
  ['ogg', 'audio/ogg'],
  ['wav', 'audio/wav'],
  ['mp4', 'video/mp4'],
  ['webm', 'video/webm'],
  ['bin', DEFAULT_MEDIA_TYPE],
]);

/** mediaTypeFor is the Content-Type for a file name, from its last extension, case-insensitive. */
export function mediaTypeFor(fileName: string): string {
  const slash = Math.max(fileName.lastIndexOf('/'), fileName.lastIndexOf('\\'));
  const dot = fileName.lastIndexOf('.');
  if (dot <= slash + 1) return DEFAULT_MEDIA_TYPE; // no extension, or a dot file such as `.env`
  return MEDIA_TYPES.get(fileName.slice(dot + 1).toLowerCase()) ?? DEFAULT_MEDIA_TYPE;
}
