/** Medians, spreads and number formatting for the report. */

/** Summary is the median, min and max of a list of runs. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  runs: number;
}

/** summarize reduces the finite values of `values` to their median, min and max. */
export function summarize(values: number[]): Summary {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return { median: NaN, min: NaN, max: NaN, runs: 0 };
  const mid = v.length >> 1;
  const median = v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]!, runs: v.length };
}

/** ratios divides run k of `a` by run k of `b`, so each ratio compares figures from one run. */
export function ratios(a: number[], b: number[]): number[] {
  return a.map((x, k) => {
    const y = b[k];
    return y === undefined || !Number.isFinite(x) || !Number.isFinite(y) || y === 0 ? NaN : x / y;
  });
}

/** fmt prints a figure with about three significant digits and thousands separators. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return '—';
  const abs = Math.abs(x);
  if (abs >= 1000) return Math.round(x).toLocaleString('en-US');
  if (abs >= 100) return x.toFixed(0);
  if (abs >= 10) return x.toFixed(1);
  if (abs >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

/** fmtRatio prints a ratio as `1.23x`. */
export function fmtRatio(x: number): string {
  return Number.isFinite(x) ? `${x >= 10 ? x.toFixed(1) : x.toFixed(2)}x` : '—';
}
