/**
 * Certificates for the TLS tests, made with `openssl` in a temp dir the caller removes: a
 * self-signed server certificate for 127.0.0.1 and localhost, and a self-signed client certificate
 * that serves as its own CA. Each call makes a new key, so two calls give certificates a client
 * can tell apart (by fingerprint), as after a renewal.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** Cert is one certificate and its key, as files and as PEM text. */
export interface Cert {
  readonly certfile: string;
  readonly keyfile: string;
  readonly cert: string;
  readonly key: string;
}

/** makeCert writes `NAME.pem` and `NAME.key` in `dir`, for `subject` valid a day. */
export function makeCert(dir: string, name: string, subject = '/CN=localhost', san = 'IP:127.0.0.1,DNS:localhost'): Cert {
  const certfile = path.join(dir, `${name}.pem`);
  const keyfile = path.join(dir, `${name}.key`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyfile, '-out', certfile, '-days', '1', '-subj', subject, '-addext', `subjectAltName=${san}`,
  ], { stdio: 'ignore' });
  return { certfile, keyfile, cert: readFileSync(certfile, 'utf8'), key: readFileSync(keyfile, 'utf8') };
}
