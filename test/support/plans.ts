/**
 * PostgreSQL's plans as the tests read them: `explain (format json)`, with `analyze` or without,
 * flattened to every node, for tests that hold a statement to the indexes it may use.
 */

/** One node of a plan, with the fields the tests read (those of `analyze` present only with it). */
export interface PlanNode {
  'Node Type': string;
  Alias?: string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Index Cond'?: string;
  Filter?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  Plans?: PlanNode[];
}

/** Every node of the plan in the one row an `explain (format json)` answers (text on PGlite, JSON on PostgreSQL). */
export function planNodes(rows: Record<string, unknown>[]): PlanNode[] {
  const raw = Object.values(rows[0]!)[0]!;
  const plan = (typeof raw === 'string' ? JSON.parse(raw) : raw) as [{ Plan: PlanNode }];
  const nodes: PlanNode[] = [];
  const walk = (node: PlanNode) => {
    nodes.push(node);
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(plan[0].Plan);
  return nodes;
}
