/**
 * Where the time goes, from the `.cpuprofile` files `node --cpu-prof` wrote: self time grouped by
 * who spent it (a package, a part of Node, the garbage collector, a file of ours), as a share of
 * the time the process was busy (idle time left out). `npm run bench -- --profile` prints it.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const NODE_GROUPS: [RegExp, string][] = [
  [/^node:_http_|^node:http$/, 'Node: HTTP'],
  [/^node:(net|stream|internal\/streams|internal\/stream_base_commons)/, 'Node: sockets and streams'],
  [/^node:internal\/(process\/task_queues|timers|async_hooks)|^node:(timers|events)$/, 'Node: event loop, timers, events'],
  [/^node:(crypto|internal\/crypto)/, 'Node: crypto'],
  [/^node:/, 'Node: other'],
];

/** Source maps of bundled scripts (the server is one file: scripts/bundle-server.ts), by URL. */
const sourceMaps = new Map<string, SourceMap | undefined>();

/** A frame of a bundled script as the frame of the file it came from, when the bundle has a map. */
function unbundled(frame: CallFrame): CallFrame {
  if (!frame.url.startsWith('file://')) return frame;
  if (!sourceMaps.has(frame.url)) {
    const mapFile = `${fileURLToPath(frame.url)}.map`;
    sourceMaps.set(frame.url, existsSync(mapFile) ? new SourceMap(JSON.parse(readFileSync(mapFile, 'utf8'))) : undefined);
  }
  const entry = sourceMaps.get(frame.url)?.findEntry(frame.lineNumber, frame.columnNumber) as { originalSource?: string } | undefined;
  return entry?.originalSource ? { ...frame, url: new URL(entry.originalSource, frame.url).href } : frame;
}

/** Who a frame's self time belongs to. */
export function groupOf(bundledFrame: CallFrame): string {
  const { functionName, url } = unbundled(bundledFrame);
  if (functionName === '(garbage collector)') return 'garbage collector';
  if (functionName === '(program)') return 'V8 and native (program)';
  if (functionName === '(idle)') return '(idle)';
  const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (packageMatch) return packageMatch[1]!;
  for (const [pattern, group] of NODE_GROUPS) if (pattern.test(url)) return group;
  const ours = /\/(?:dist\/)?((?:server|client|generated)\/.+)$/.exec(url);
  if (ours) return `ours: ${ours[1]!.replace(/\.ts$/, '.js')}`;
  // Builtins without a script: socket writes, hashing, JSON and the like, named by function.
  if (url === '') return `native: ${functionName || '(anonymous)'}`;
  return url;
}

export function summariseProfiles(directory: string, top = 25): string {
  const totals = new Map<string, number>();
  for (const file of readdirSync(directory).filter((f) => f.endsWith('.cpuprofile'))) {
    const profile = JSON.parse(readFileSync(join(directory, file), 'utf8')) as CpuProfile;
    const groups = new Map(profile.nodes.map((node) => [node.id, groupOf(node.callFrame)]));
    profile.samples.forEach((id, i) => {
      const group = groups.get(id)!;
      totals.set(group, (totals.get(group) ?? 0) + (profile.timeDeltas[i] ?? 0));
    });
  }
  totals.delete('(idle)');
  const busy = [...totals.values()].reduce((a, b) => a + b, 0);
  const rows = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  const lines = [
    `Where the real server's busy time went (self time; ${(busy / 1e6).toFixed(1)} s busy, profiles in ${directory}):`,
    '',
    '| who | share of busy time |',
    '|---|---:|',
    ...rows.map(([group, micros]) => `| ${group} | ${((100 * micros) / busy).toFixed(1)}% |`),
  ];
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(summariseProfiles(process.argv[2]!));
