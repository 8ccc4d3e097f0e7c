/**
 * The contract suite: every case of `cases.ts` against every way of serving an app of
 * `targets.ts`. Each test's title opens with the SPEC ids its case shows (`SR-9, SR-10: ...`), per
 * server. A server that cannot keep a rule runs the case's documented deviation instead, named as
 * such. A case that needs a connection (`wireOnly`) is not run against a target that has none:
 * there is nothing on that target for it to check. Under `validate()`, the suite also checks that
 * the validator reported nothing for a valid app, and that it reported the right rule for an app
 * that breaks one.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CASES, Probe, until, type Case } from './cases.ts';
import { FILE_CASES } from './file-cases.ts';
import { KINDS, closeAll, type Kind } from './targets.ts';

afterEach(closeAll);

function title(c: Case): string {
  return `${c.spec.join(', ')}: ${c.name}`;
}

describe.each(KINDS.map((kind) => ({ kind, name: kind.name })))('contract on $name', ({ kind }: { kind: Kind }) => {
  const all = [...CASES, ...FILE_CASES];
  if (kind.excluded !== undefined) {
    const excluded = kind.excluded;
    it('the cases this target does not run are declared, each naming a case and why', () => {
      const names = new Set(all.map((c) => c.name));
      expect(Object.keys(excluded).filter((name) => !names.has(name))).toEqual([]);
      expect(all.filter((c) => c.wireOnly !== undefined && excluded[c.name] === undefined).map((c) => c.name)).toEqual([]);
    });
  }
  for (const c of all) {
    if (kind.excluded?.[c.name] !== undefined) continue;
    if (c.wireOnly !== undefined && !kind.wire) continue;
    const deviation = c.deviations?.[kind.name];
    if (deviation !== undefined) {
      it(`${title(c)} (documented deviation: ${deviation.reason})`, async () => {
        const probe = new Probe();
        const target = await kind.start(c.app(probe));
        await deviation.run(target, probe);
      });
      continue;
    }
    if (kind.validated && c.violates !== undefined) {
      it(`${title(c)} (the app breaks ${c.violates} on purpose: validate() reports it)`, async () => {
        const probe = new Probe();
        const target = await kind.start(c.app(probe));
        await target.send(c.request ?? {});
        await until(() => target.errors.some((e) => e.includes(`ValidationError: [${c.violates}]`)), `a ValidationError naming ${c.violates}`);
      });
      continue;
    }
    const bug = c.knownBug?.[kind.name];
    const test = bug !== undefined ? it.fails : it;
    test(`${title(c)}${bug !== undefined ? ` (KNOWN SERVER BUG, expected to fail until fixed: ${bug})` : ''}`, async () => {
      const probe = new Probe();
      const target = await kind.start(c.app(probe));
      await c.run(target, probe);
      if (kind.validated) {
        const reports = target.errors.filter((e) => e.includes('ValidationError') || e.includes('nsgi validator'));
        if (c.warns === undefined) expect(reports).toEqual([]);
        else expect(reports).toEqual([expect.stringMatching(new RegExp(`^nsgi validator warning: \\[${c.warns}\\]`))]);
      }
    });
  }
});
