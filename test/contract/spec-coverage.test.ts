/**
 * Every rule of protocol/SPEC.md is checked by a test that names it: each id the SPEC defines
 * opens the title of at least one test, and every id of the SPEC's prefixes (`SR-`, `SRV-`, ...)
 * that a title opens with is one the SPEC defines.
 * The titles are the ones vitest reports (`vitest list`, which imports the test files without
 * running them), so tables and contract cases count as they appear. The extraction is first
 * shown on small samples, so that a broken pattern fails here instead of passing everything.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { LIST_TIMEOUT_MS, listTestTitles, readSpec, specRuleIds, titleRuleIds, unknownIds, unnamedIds } from '../helpers/spec-ids.ts';

const SAMPLE_SPEC = `
Every MUST or SHOULD rule starts with an id in brackets, such as **[SR-4]**, followed by the party.

- **[APP-1]** *(app)* An app MUST be a function.
- **[SR-22]** *(server)* A second call MUST throw,
  as SR-7 says.
  - **[SR-99]** nested items define nothing.
- **[SRV-3]** *(server)* An HTTP/1.1 connection MUST be kept open.
`;

describe('the id extraction, on samples', () => {
  it('takes the ids of rule items only, not ids mentioned in prose or nested', () => {
    expect(specRuleIds(SAMPLE_SPEC)).toEqual(['APP-1', 'SR-22', 'SRV-3']);
  });

  it('takes the ids a title opens with, and none from later in the title', () => {
    expect(titleRuleIds('SR-9: a 426 carries Upgrade')).toEqual(['SR-9']);
    expect(titleRuleIds('SRV-14, SRV-15: two lengths get 400')).toEqual(['SRV-14', 'SRV-15']);
    expect(titleRuleIds('a read after the response fails (IN-1)')).toEqual([]);
    expect(titleRuleIds('[SR-5] reports a header value')).toEqual([]);
    expect(titleRuleIds('SR-5 reports a header value')).toEqual([]);
  });

  it('lists the ids no title names, and the ids of the SPEC\'s prefixes that titles name but the SPEC does not define', () => {
    const titles = ['APP-1: an app is a function', 'SR-22, SR-23: a second call throws', 'an untitled check (SRV-3)', 'BR-4: another document\'s rule'];
    expect(unnamedIds(['APP-1', 'SR-22', 'SRV-3'], titles)).toEqual(['SRV-3']);
    expect(unknownIds(['APP-1', 'SR-22', 'SRV-3'], titles)).toEqual([['SR-23', 'SR-22, SR-23: a second call throws']]);
  });
});

describe('protocol/SPEC.md against the test titles', () => {
  let ids: string[] = [];
  let titles: string[] = [];

  beforeAll(async () => {
    [ids, titles] = await Promise.all([readSpec().then(specRuleIds), listTestTitles()]);
  }, LIST_TIMEOUT_MS);

  it('defines its rule ids once each', () => {
    expect(ids.length).toBeGreaterThan(100);
    expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
  });

  it('has every rule id named by the title of at least one test', () => {
    expect(titles).toContain('has every rule id named by the title of at least one test');
    expect(unnamedIds(ids, titles), 'rule ids that open no test title').toEqual([]);
  });

  it('has every id of the SPEC\'s prefixes that opens a test title defined in the SPEC', () => {
    expect(unknownIds(ids, titles), 'ids that open a test title but name no rule').toEqual([]);
  });
});
