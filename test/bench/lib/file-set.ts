/**
 * The files the file scenario serves: a temporary folder holding a small file for the route
 * check and the large file the scenario downloads, written once per run and removed at its end.
 * Every server reads the same folder (named in `$BENCH_FILE_ROOT`), from the page cache.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** CHECK_FILE is the file the route check downloads; its odd size catches a server that drops a tail. */
export const CHECK_FILE = { name: 'check.bin', size: 100_003 };

/** DATA_FILE is the name of the large file the scenario downloads. */
export const DATA_FILE = 'data.bin';

/** BLOCK is the size of the random block repeated through the files (and of each read that warms the cache). */
const BLOCK = 1024 * 1024;

/** FileSet is the folder of one run's files. */
export interface FileSet {
  /** The folder: `CHECK_FILE.name` and `DATA_FILE` are in it. */
  root: string;
  /** The size of `DATA_FILE` in bytes. */
  size: number;
  /** remove deletes the folder; it is synchronous so that it can run when the suite exits. */
  remove(): void;
}

/** writeFileSet writes the check file and a `size`-byte data file into a new temporary folder. */
export async function writeFileSet(size: number): Promise<FileSet> {
  const root = await mkdtemp(join(tmpdir(), 'nsgi-bench-files-'));
  const remove = (): void => rmSync(root, { recursive: true, force: true });
  try {
    const block = randomBytes(BLOCK);
    await writeRepeated(join(root, CHECK_FILE.name), block, CHECK_FILE.size);
    await writeRepeated(join(root, DATA_FILE), block, size);
    await readThrough(join(root, DATA_FILE));
  } catch (err) {
    remove();
    throw err;
  }
  return { root, size, remove };
}

/** writeRepeated fills `path` with `size` bytes of `block`, repeated. */
async function writeRepeated(path: string, block: Buffer, size: number): Promise<void> {
  const handle = await open(path, 'w');
  try {
    for (let written = 0; written < size; written += block.length) await handle.write(block, 0, Math.min(block.length, size - written));
  } finally {
    await handle.close();
  }
}

/** readThrough reads `path` once into one reused buffer, so every server starts from the page cache. */
async function readThrough(path: string): Promise<void> {
  const handle = await open(path, 'r');
  const buffer = Buffer.allocUnsafe(BLOCK);
  try {
    while ((await handle.read(buffer, 0, BLOCK, null)).bytesRead > 0);
  } finally {
    await handle.close();
  }
}
