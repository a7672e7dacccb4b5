// The README's examples read the token from process.env, as server code does; this project has no
// Node types, so that the package is shown to need none.
declare const process: { env: Record<string, string | undefined> };

// The README's mock example is a vitest test; this project does not install vitest, so its few
// functions are declared here (what is checked is the package's API, not vitest's).
declare module 'vitest' {
  export function beforeAll(fn: () => unknown): void;
  export function afterAll(fn: () => unknown): void;
  export function afterEach(fn: () => unknown): void;
  export function it(name: string, fn: () => unknown): void;
  export function expect<T>(actual: T): { toBe(expected: T): void; toEqual(expected: unknown): void };
}
