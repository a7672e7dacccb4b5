// The client README's mock example is a vitest test; the project that compiles the READMEs' examples
// does not install vitest, so its few functions are declared here (what is checked is the package's
// API and the examples, not vitest's).
declare module 'vitest' {
  export function beforeAll(fn: () => unknown): void;
  export function afterAll(fn: () => unknown): void;
  export function afterEach(fn: () => unknown): void;
  export function it(name: string, fn: () => unknown): void;
  export function expect<T>(actual: T): { toBe(expected: T): void; toEqual(expected: unknown): void };
}
