/**
 * The mutation fuzzer's fixed-seed slice (test/server/fuzzer.ts): every mutated request gets only
 * well-formed responses and a closed connection, and after every batch a normal request is
 * answered and no file descriptor is left open. `npm run fuzz -- --inputs N --seed S` runs longer.
 */
import { describe, expect, it } from 'vitest';
import { makeInput, runFuzz } from './fuzzer.ts';

describe('mutation fuzzing over real sockets', () => {
  it('1,200 inputs of seed 20261206: no hang, no malformed or 500 response, no leak, always answering', { timeout: 60_000 }, async () => {
    const report = await runFuzz({ inputs: 1200, seed: 20261206 });
    expect(report.anomalies).toEqual([]);
    // The slice reaches the server's refusals as well as its answers, and every way of ending.
    expect(report.statuses['200']).toBeGreaterThan(0);
    expect(report.statuses['400']).toBeGreaterThan(0);
    expect(report.endings.rst).toBeGreaterThan(0);
    expect(report.endings['fin-early']).toBeGreaterThan(0);
    expect(report.endings.silent).toBeGreaterThan(0);
  });

  it('inputs are repeatable from their seed', () => {
    expect(makeInput(7, 3)).toEqual(makeInput(7, 3));
    expect(makeInput(7, 3)).not.toEqual(makeInput(7, 4));
  });
});
