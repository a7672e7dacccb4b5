/**
 * What the machine itself did meanwhile: the share of its CPU time the hypervisor gave to other
 * machines (steal). On this kind of machine steal was seen to take 30 to 45% of the two cores for
 * minutes at a time, halving every server's throughput, baselines included; a figure taken then
 * says little about the service. The benchmarks print it beside their figures.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** The kernel's clock ticks per second (USER_HZ), in which /proc reports CPU time. */
const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

export interface CpuTicks {
  total: number;
  steal: number;
  idle: number;
  iowait: number;
}

/** The machine's CPU time so far, in ticks (the first line of /proc/stat): all of it, the steal, idle and iowait. */
export function cpuTicks(): CpuTicks {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { total: fields.slice(0, 8).reduce((sum, n) => sum + n, 0), steal: fields[7] ?? 0, idle: fields[3] ?? 0, iowait: fields[4] ?? 0 };
}

/** The steal between two readings, in % of the machine's CPU time. */
export function stealPercent(before: CpuTicks, after: CpuTicks): number {
  return (100 * (after.steal - before.steal)) / Math.max(1, after.total - before.total);
}

interface ProcessStat {
  pid: number;
  ppid: number;
  comm: string;
  ticks: number;
  reapedTicks: number;
}

/** Every process's parent, name and CPU time (user + system, in ticks, its threads included). */
function processes(): ProcessStat[] {
  const found: ProcessStat[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name (field 2) is in parentheses and may hold spaces: the fields after it start past the last ")".
      const close = stat.lastIndexOf(')');
      const fields = stat.slice(close + 2).split(' ');
      // proc(5): ppid is field 4, utime and stime fields 14 and 15.
      found.push({
        pid: Number(entry),
        ppid: Number(fields[1]),
        comm: stat.slice(stat.indexOf('(') + 1, close),
        ticks: Number(fields[11]) + Number(fields[12]),
        // cutime and cstime (fields 16 and 17): the children it has reaped, whose own lines are gone.
        reapedTicks: Number(fields[13]) + Number(fields[14]),
      });
    } catch {
      // gone between the listing and the read
    }
  }
  return found;
}

/** CPU time in ticks of a process and all its descendants (tsx runs the script in a child of the process it starts). */
function treeTicks(all: ProcessStat[], pid: number): number {
  return all
    .filter((p) => p.ppid === pid)
    .reduce((sum, child) => sum + treeTicks(all, child.pid), all.find((p) => p.pid === pid)?.ticks ?? 0);
}

/** Where a run's CPU time went, in ticks: the server's process, PostgreSQL's, and everything else on the machine (the load generator, the benchmark). */
export interface CpuSplit {
  server: number;
  database: number;
  machine: CpuTicks;
}

export function cpuSplit(serverPid: number): CpuSplit {
  const all = processes();
  // Every PostgreSQL process, and through the postmaster's reaped-children time the backends that
  // ended meanwhile (a pool closes idle connections): a sum that only grows.
  const postgres = all.filter((p) => p.comm === 'postgres');
  const postmasters = postgres.filter((p) => !postgres.some((parent) => parent.pid === p.ppid));
  const database = postgres.reduce((sum, p) => sum + p.ticks, 0) + postmasters.reduce((sum, p) => sum + p.reapedTicks, 0);
  return { server: treeTicks(all, serverPid), database, machine: cpuTicks() };
}

/** The CPU time per request, in µs, between two splits: server, database, and the rest (steal and idle not counted). */
export function cpuPerRequest(before: CpuSplit, after: CpuSplit, requests: number): { server: number; database: number; rest: number } {
  const usPerTick = 1e6 / CLOCK_TICKS_PER_SECOND;
  const busy = (t: CpuTicks) => t.total - t.steal - t.idle - t.iowait;
  const server = after.server - before.server;
  const database = after.database - before.database;
  const all = busy(after.machine) - busy(before.machine);
  const per = (ticks: number) => (ticks * usPerTick) / Math.max(1, requests);
  return { server: per(server), database: per(database), rest: per(Math.max(0, all - server - database)) };
}
