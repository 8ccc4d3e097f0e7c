/** nsgi serving the file benchmark's folder with `staticFiles` (file bodies, 64 KiB reads). */
import { serve } from '../../../src/index.ts';
import { staticFiles } from '../../../src/helpers/static-files.ts';
import { announce, exitOnSignals, portFromArgv } from './ready.ts';

exitOnSignals();
const root = process.env['BENCH_FILE_ROOT'];
if (root === undefined) throw new Error('BENCH_FILE_ROOT must name the folder to serve');
const server = await serve(staticFiles(root), { host: '127.0.0.1', port: portFromArgv() });
announce('nsgi', server.port);
