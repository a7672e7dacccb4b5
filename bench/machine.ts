/**
 * What the machine itself did meanwhile: the share of its CPU time the hypervisor gave to other
 * machines (steal). On this kind of machine steal was seen to take 30 to 45% of the two cores for
 * minutes at a time, halving every server's throughput, baselines included; a figure taken then
 * says little about the service. The benchmarks print it beside their figures.
 */
import { readFileSync } from 'node:fs';

export interface CpuTicks {
  total: number;
  steal: number;
}

/** The machine's CPU time so far, in ticks (the first line of /proc/stat): all of it, and the steal. */
export function cpuTicks(): CpuTicks {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { total: fields.slice(0, 8).reduce((sum, n) => sum + n, 0), steal: fields[7] ?? 0 };
}

/** The steal between two readings, in % of the machine's CPU time. */
export function stealPercent(before: CpuTicks, after: CpuTicks): number {
  return (100 * (after.steal - before.steal)) / Math.max(1, after.total - before.total);
}
