/**
 * The SPEC rule ids and the test titles that name them, for the coverage test
 * (`test/contract/spec-coverage.test.ts`).
 *
 * A rule is defined in `protocol/SPEC.md` by a list item that opens with its id in bold brackets
 * (`- **[SR-4]** *(app)* ...`); a mention elsewhere (`such as **[SR-4]**`, `as SR-22 says`) defines
 * nothing. A test names the rules it checks by opening its title with their ids, comma-separated
 * and followed by a colon (`SR-9, SR-10: a 426 carries Upgrade`); an id later in the title, or in
 * a describe block's name, names nothing.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './spawn-cli.ts';

/** RULE_DEFINITION finds each rule id where SPEC.md defines it: a list item opening with `**[ID]**`. */
const RULE_DEFINITION = /^- \*\*\[([A-Z]+-\d+)\]\*\*/gm;

/** TITLE_IDS is the id list a test title opens with: `ID, ID: `. */
const TITLE_IDS = /^([A-Z]+-\d+(?:, [A-Z]+-\d+)*): /;

/** LIST_TIMEOUT_MS bounds `vitest list`, which imports every test file (about 10 s on an idle machine). */
export const LIST_TIMEOUT_MS = 120_000;

/** specRuleIds returns the rule ids SPEC text defines, in the order it defines them. */
export function specRuleIds(spec: string): string[] {
  return [...spec.matchAll(RULE_DEFINITION)].map((m) => m[1]!);
}

/** titleRuleIds returns the rule ids a test title opens with, or none. */
export function titleRuleIds(title: string): string[] {
  const m = TITLE_IDS.exec(title);
  return m === null ? [] : m[1]!.split(', ');
}

/** unnamedIds returns the ids of `ids` that no title in `titles` opens with, in their order. */
export function unnamedIds(ids: readonly string[], titles: readonly string[]): string[] {
  const named = new Set(titles.flatMap(titleRuleIds));
  return ids.filter((id) => !named.has(id));
}

/**
 * unknownIds returns the ids titles open with that `ids` does not hold although their prefix is
 * one of its prefixes (a typo, or a retired rule), each once, with a title naming it. Ids of
 * another document's prefix (`BR-4` for a rule outside the SPEC) are not the SPEC's to judge.
 */
export function unknownIds(ids: readonly string[], titles: readonly string[]): Array<[string, string]> {
  const known = new Set(ids);
  const prefixes = new Set(ids.map(prefixOf));
  const seen = new Map<string, string>();
  for (const title of titles) {
    for (const id of titleRuleIds(title)) {
      if (!known.has(id) && prefixes.has(prefixOf(id)) && !seen.has(id)) seen.set(id, title);
    }
  }
  return [...seen];
}

/** prefixOf returns the letters of a rule id, such as `SRV` for `SRV-14`. */
function prefixOf(id: string): string {
  return id.slice(0, id.indexOf('-'));
}

/** readSpec returns the text of protocol/SPEC.md. */
export function readSpec(): Promise<string> {
  return readFile(path.join(REPO_ROOT, 'protocol', 'SPEC.md'), 'utf8');
}

/**
 * listTestTitles asks vitest which tests `test/**\/*.test.ts` hold, without running them, and
 * returns each test's own title (the last part of its full name, after the describe blocks).
 * The titles are the ones vitest prints, so a title built from a table or a contract case counts
 * as it appears in the report.
 */
export async function listTestTitles(): Promise<string[]> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nsgi-spec-ids-'));
  const out = path.join(dir, 'tests.json');
  // The child is a vitest of its own: the variables of the worker running this file would make it
  // believe it is one of this run's workers.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('VITEST') && key !== 'TEST'));
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(
        process.execPath,
        [path.join(REPO_ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'list', `--json=${out}`],
        { cwd: REPO_ROOT, env, timeout: LIST_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 },
        (err, _stdout, stderr) => (err === null ? resolve() : reject(new Error(`vitest list failed: ${err.message}\n${stderr}`))),
      );
    });
    const tests = JSON.parse(await readFile(out, 'utf8')) as Array<{ name: string }>;
    return tests.map((t) => t.name.split(' > ').at(-1)!);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
